// SPDX-License-Identifier: MPL-2.0

//! Properties, one way for every element: each element's `settings.rs` holds its `PROP_*`
//! names, `DEFAULT_*` values, param specs and a `Settings` that implements [`Properties`].
//! GObject checks a property's name and type before it calls an element, so a failure here is
//! a bug in the element: it is logged by the caller, and never a panic in a user's pipeline.

use std::fmt;

use gst::glib;
use gst::prelude::*;

/// Why a property could not be set or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyError {
    /// The settings have no property of this name.
    Unknown(String),
    /// The value is not of the property's type.
    WrongType(String),
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyError::Unknown(name) => write!(f, "no property {name}"),
            PropertyError::WrongType(name) => write!(f, "a value of the wrong type for {name}"),
        }
    }
}

impl std::error::Error for PropertyError {}

/// Settings set and read by property name.
pub trait Properties {
    fn set(&mut self, name: &str, value: &glib::Value) -> Result<(), PropertyError>;
    fn get(&self, name: &str) -> Result<glib::Value, PropertyError>;
}

/// `value` as a `T`, for property `name`.
pub fn value<T>(name: &str, value: &glib::Value) -> Result<T, PropertyError>
where
    T: for<'a> glib::value::FromValue<'a> + 'static,
{
    value
        .get::<T>()
        .map_err(|_| PropertyError::WrongType(name.to_owned()))
}

/// Stores `value` in `slot`, for property `name`.
pub fn put<T>(slot: &mut T, name: &str, v: &glib::Value) -> Result<(), PropertyError>
where
    T: for<'a> glib::value::FromValue<'a> + 'static,
{
    *slot = value(name, v)?;
    Ok(())
}

/// The unknown-property error for `name`.
pub fn unknown<T>(name: &str) -> Result<T, PropertyError> {
    Err(PropertyError::Unknown(name.to_owned()))
}

/// What `ObjectImpl::property` returns when the settings cannot say: the spec's default,
/// with the reason logged.
pub fn or_default(
    cat: gst::DebugCategory,
    obj: &impl IsA<glib::Object>,
    pspec: &glib::ParamSpec,
    got: Result<glib::Value, PropertyError>,
) -> glib::Value {
    got.unwrap_or_else(|e| {
        gst::error!(cat, obj = obj, "{e}");
        pspec.default_value().clone()
    })
}

/// Logs a failed set (see the module's note).
pub fn log_set_error(
    cat: gst::DebugCategory,
    obj: &impl IsA<glib::Object>,
    res: Result<(), PropertyError>,
) {
    if let Err(e) = res {
        gst::error!(cat, obj = obj, "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct S {
        n: u64,
        on: bool,
    }

    impl Properties for S {
        fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
            match name {
                "n" => put(&mut self.n, name, v),
                "on" => put(&mut self.on, name, v),
                _ => unknown(name),
            }
        }

        fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
            match name {
                "n" => Ok(self.n.to_value()),
                "on" => Ok(self.on.to_value()),
                _ => unknown(name),
            }
        }
    }

    #[test]
    fn wrong_names_and_types_are_errors_not_panics() {
        let mut s = S::default();
        s.set("n", &7u64.to_value()).unwrap();
        s.set("on", &true.to_value()).unwrap();
        assert_eq!(s.get("n").unwrap().get::<u64>(), Ok(7));
        assert!(s.on);
        assert_eq!(
            s.set("n", &"seven".to_value()),
            Err(PropertyError::WrongType("n".into()))
        );
        assert_eq!(s.n, 7, "unchanged");
        assert_eq!(
            s.set("m", &1u64.to_value()),
            Err(PropertyError::Unknown("m".into()))
        );
        assert!(s.get("m").is_err());
    }
}
