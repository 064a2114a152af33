//! Byte views over wire structures, in the style of smoltcp's `wire` module.
//!
//! Every structure the spec lays out in memory (descriptors, request headers,
//! configuration spaces, ...) has a view type `Foo<B: AsRef<[u8]>>` generated
//! by [`wire_view!`](crate::wire_view):
//!
//! - `Foo::new_unchecked(buf)` wraps a buffer; `Foo::new_checked(buf)` also
//!   checks that it holds at least `Foo::<B>::SIZE` bytes ([`Truncated`]
//!   otherwise), after which no getter or setter can panic.
//! - one getter per spec field, named after it (`type_` for `type`), returning
//!   the native value; `set_*` setters when `B: AsMut<[u8]>`.
//! - a module-level `FOO_SIZE`-style constant for the structure's size.
//!
//! Multi-byte fields are little-endian (VIRTIO 1.4 §1.4). Values the spec does
//! not define are returned as they are, never rejected: interpreting them is
//! the caller's job.
//!
//! Trust and panic contract: views never panic after `new_checked` succeeded;
//! with `new_unchecked` on a short buffer, accessors panic (as slice indexing
//! does). Views are for private copies of bytes: they must not be built over
//! memory the peer can write (use the queue crate's volatile accessors there).

use crate::le::{Le16, Le32, Le64};

/// The buffer given to a view is shorter than the structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Bytes the structure needs.
    pub needed: usize,
    /// Bytes the buffer has.
    pub got: usize,
}

impl core::fmt::Display for Truncated {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "buffer of {} bytes is shorter than the {}-byte structure",
            self.got, self.needed
        )
    }
}

impl core::error::Error for Truncated {}

/// A field type of a wire view: how it is read from and written to bytes.
pub trait WireField {
    /// The value getters return and setters take.
    type Native;
    /// Size of the field on the wire.
    const LEN: usize;
    /// Reads the field from exactly `LEN` bytes.
    fn get(bytes: &[u8]) -> Self::Native;
    /// Writes the field to exactly `LEN` bytes.
    fn set(bytes: &mut [u8], value: Self::Native);
}

impl WireField for u8 {
    type Native = u8;
    const LEN: usize = 1;
    #[inline]
    fn get(bytes: &[u8]) -> u8 {
        bytes[0]
    }
    #[inline]
    fn set(bytes: &mut [u8], value: u8) {
        bytes[0] = value;
    }
}

macro_rules! le_field {
    ($le:ty, $native:ty, $n:expr) => {
        impl WireField for $le {
            type Native = $native;
            const LEN: usize = $n;
            #[inline]
            fn get(bytes: &[u8]) -> $native {
                let mut b = [0u8; $n];
                b.copy_from_slice(&bytes[..$n]);
                <$native>::from_le_bytes(b)
            }
            #[inline]
            fn set(bytes: &mut [u8], value: $native) {
                bytes[..$n].copy_from_slice(&value.to_le_bytes());
            }
        }
    };
}
le_field!(Le16, u16, 2);
le_field!(Le32, u32, 4);
le_field!(Le64, u64, 8);

impl<const N: usize> WireField for [u8; N] {
    type Native = [u8; N];
    const LEN: usize = N;
    #[inline]
    fn get(bytes: &[u8]) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&bytes[..N]);
        b
    }
    #[inline]
    fn set(bytes: &mut [u8], value: [u8; N]) {
        bytes[..N].copy_from_slice(&value);
    }
}

/// Declares a byte view over a wire structure. See the [module docs](crate::wire).
///
/// ```
/// use ringwork_spec::{wire_view, le::{Le16, Le32}};
///
/// wire_view! {
///     /// An example structure.
///     pub struct Example, size EXAMPLE_SIZE = 8 {
///         /// A 32-bit field at offset 0.
///         @0 a / set_a: Le32,
///         /// A 16-bit field at offset 4.
///         @4 b / set_b: Le16,
///         /// Two bytes at offset 6.
///         @6 c / set_c: [u8; 2],
///     }
/// }
///
/// let mut bytes = [0u8; 8];
/// let mut view = Example::new_checked(&mut bytes[..]).unwrap();
/// view.set_a(0x0403_0201);
/// view.set_b(0x0605);
/// view.set_c([7, 8]);
/// assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
/// assert!(Example::new_checked(&bytes[..7]).is_err());
/// ```
#[macro_export]
macro_rules! wire_view {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, size $size_const:ident = $size:literal {
            $(
                $(#[$fmeta:meta])*
                @ $off:literal $get:ident / $set:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        #[doc = concat!("Size in bytes of [`", stringify!($name), "`].")]
        pub const $size_const: usize = $size;

        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<B> {
            buffer: B,
        }

        impl<B> $name<B> {
            /// Size of the structure in bytes.
            pub const SIZE: usize = $size;

            /// Wraps a buffer without checking its length; accessors panic if it
            /// is shorter than [`Self::SIZE`].
            #[inline]
            pub const fn new_unchecked(buffer: B) -> Self {
                Self { buffer }
            }

            /// Returns the wrapped buffer.
            #[inline]
            pub fn into_inner(self) -> B {
                self.buffer
            }
        }

        impl<B: AsRef<[u8]>> $name<B> {
            /// Wraps a buffer after checking that it holds the whole structure.
            #[inline]
            pub fn new_checked(buffer: B) -> ::core::result::Result<Self, $crate::wire::Truncated> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Checks that the buffer holds the whole structure.
            #[inline]
            pub fn check_len(&self) -> ::core::result::Result<(), $crate::wire::Truncated> {
                let got = self.buffer.as_ref().len();
                if got < $size {
                    Err($crate::wire::Truncated { needed: $size, got })
                } else {
                    Ok(())
                }
            }

            /// The structure's bytes (the first [`Self::SIZE`] bytes of the buffer).
            #[inline]
            pub fn as_bytes(&self) -> &[u8] {
                &self.buffer.as_ref()[..$size]
            }

            $(
                $(#[$fmeta])*
                #[inline]
                #[allow(clippy::int_plus_one)]
                pub fn $get(&self) -> <$ty as $crate::wire::WireField>::Native {
                    const _: () = assert!($off + <$ty as $crate::wire::WireField>::LEN <= $size);
                    <$ty as $crate::wire::WireField>::get(
                        &self.buffer.as_ref()[$off..$off + <$ty as $crate::wire::WireField>::LEN],
                    )
                }
            )*
        }

        impl<B: AsRef<[u8]> + AsMut<[u8]>> $name<B> {
            $(
                #[doc = concat!("Sets the `", stringify!($get), "` field.")]
                #[inline]
                pub fn $set(&mut self, value: <$ty as $crate::wire::WireField>::Native) {
                    <$ty as $crate::wire::WireField>::set(
                        &mut self.buffer.as_mut()[$off..$off + <$ty as $crate::wire::WireField>::LEN],
                        value,
                    )
                }
            )*
        }

        impl<B: AsRef<[u8]>> ::core::fmt::Debug for $name<B> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                if self.check_len().is_err() {
                    return f.debug_struct(stringify!($name)).field("truncated", &true).finish();
                }
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($get), &self.$get()))*
                    .finish()
            }
        }
    };
}

#[cfg(test)]
#[allow(dead_code)]
mod tests {
    use crate::le::{Le16, Le64};

    wire_view! {
        /// Test structure.
        pub struct T, size T_SIZE = 10 {
            /// x
            @0 x / set_x: Le64,
            /// y
            @8 y / set_y: Le16,
        }
    }

    #[test]
    fn checked_and_debug() {
        let bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 2, 0];
        let v = T::new_checked(&bytes[..]).unwrap();
        assert_eq!((v.x(), v.y()), (1, 2));
        assert_eq!(T_SIZE, 10);
        let e = T::new_checked(&bytes[..9]).unwrap_err();
        assert_eq!((e.needed, e.got), (10, 9));
        extern crate std;
        let s = std::format!("{:?}", v);
        assert!(s.contains("x: 1") && s.contains("y: 2"), "{s}");
    }
}
