//! VIRTIO drivers (work in progress).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
