//! Explicit little-endian integer types.
//!
//! VIRTIO 1.4 §1.4 ("Structure Specifications"): every multi-byte field of a
//! non-legacy interface is little-endian (`le16`, `le32`, `le64`). These types
//! hold the *wire* representation, so a `#[repr(C)]` struct made of them has
//! exactly the spec's layout on any host, and reading a value is always an
//! explicit conversion.
//!
//! Legacy interfaces use the guest's native endianness instead (VIRTIO 1.4
//! §2.7.3); on little-endian guests that is the same thing.

macro_rules! le_type {
    ($(#[$m:meta])* $name:ident, $native:ty, $bytes:expr) => {
        $(#[$m])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name($native);

        impl $name {
            /// The zero value.
            pub const ZERO: Self = Self(0);

            /// Wraps a native value, converting it to little-endian.
            #[inline]
            pub const fn new(value: $native) -> Self {
                Self(value.to_le())
            }

            /// Returns the native value.
            #[inline]
            pub const fn get(self) -> $native {
                <$native>::from_le(self.0)
            }

            /// Stores a native value.
            #[inline]
            pub fn set(&mut self, value: $native) {
                self.0 = value.to_le();
            }

            /// Builds the value from its wire bytes.
            #[inline]
            pub const fn from_bytes(bytes: [u8; $bytes]) -> Self {
                Self(<$native>::from_ne_bytes(bytes))
            }

            /// Returns the wire bytes.
            #[inline]
            pub const fn to_bytes(self) -> [u8; $bytes] {
                self.0.to_ne_bytes()
            }
        }

        impl From<$native> for $name {
            #[inline]
            fn from(value: $native) -> Self {
                Self::new(value)
            }
        }

        impl From<$name> for $native {
            #[inline]
            fn from(value: $name) -> Self {
                value.get()
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(&self.get(), f)
            }
        }
    };
}

le_type!(
    /// A little-endian `u16` (`le16` in the spec).
    #[doc(alias = "le16")]
    Le16,
    u16,
    2
);
le_type!(
    /// A little-endian `u32` (`le32` in the spec).
    #[doc(alias = "le32")]
    Le32,
    u32,
    4
);
le_type!(
    /// A little-endian `u64` (`le64` in the spec).
    #[doc(alias = "le64")]
    Le64,
    u64,
    8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_are_little_endian() {
        assert_eq!(Le16::new(0x1234).to_bytes(), [0x34, 0x12]);
        assert_eq!(Le32::new(0x1234_5678).to_bytes(), [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(
            Le64::new(0x0102_0304_0506_0708).to_bytes(),
            [8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(Le32::from_bytes([1, 0, 0, 0]).get(), 1);
        let mut v = Le16::ZERO;
        v.set(0xbeef);
        assert_eq!(u16::from(v), 0xbeef);
        assert_eq!(core::mem::size_of::<Le64>(), 8);
        assert_eq!(core::mem::align_of::<Le32>(), 4);
    }
}
