//! Stand-ins for the 17 libdbus functions of libpcap's D-Bus capture module.
//!
//! ipft links libpcap.a statically (build.rs) to compile `-f` expressions.
//! The archive's pcap.o lists every capture source it was built with, the
//! D-Bus one (pcap-dbus.o) included, so that module comes along with
//! pcap_open_dead and pcap_compile, and it calls libdbus. libdbus-1.a would
//! in turn need libsystemd, which has no static library, and the module
//! cannot be linked away: libpcap.a is not built with a section per
//! function, so `--gc-sections` keeps it whole (both tried on Debian 12's
//! libpcap 1.10.3).
//!
//! ipft never opens a capture: it compiles on a dead handle, and names no
//! `dbus-*` device, the only way into that module. These definitions satisfy
//! the linker; if one were ever called it would fail as libdbus does when
//! there is no bus: the connecting functions return no connection with an
//! error set, the others report failure or do nothing.
use std::{
    ffi::{c_char, c_int, c_long, c_void},
    ptr,
};

/// The start of libdbus's `DBusError`: the caller owns the rest.
#[repr(C)]
pub struct DbusError {
    name: *const c_char,
    message: *const c_char,
}

const ERROR_NAME: &[u8] = b"org.freedesktop.DBus.Error.NotSupported\0";
const ERROR_MESSAGE: &[u8] = b"ipft is built without D-Bus capture\0";

/// Sets `error` (if any) to "not supported".
///
/// # Safety
/// `error` is null or points to a `DBusError`.
unsafe fn not_supported(error: *mut DbusError) {
    if let Some(error) = error.as_mut() {
        error.name = ERROR_NAME.as_ptr().cast();
        error.message = ERROR_MESSAGE.as_ptr().cast();
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_bus_get(_bus: c_int, error: *mut DbusError) -> *mut c_void {
    not_supported(error);
    ptr::null_mut()
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_connection_open(
    _address: *const c_char,
    error: *mut DbusError,
) -> *mut c_void {
    not_supported(error);
    ptr::null_mut()
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_bus_register(_conn: *mut c_void, error: *mut DbusError) -> u32 {
    not_supported(error);
    0
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_bus_add_match(
    _conn: *mut c_void,
    _rule: *const c_char,
    error: *mut DbusError,
) {
    not_supported(error);
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_message_demarshal(
    _data: *const c_char,
    _len: c_int,
    error: *mut DbusError,
) -> *mut c_void {
    not_supported(error);
    ptr::null_mut()
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_error_is_set(error: *const DbusError) -> u32 {
    error.as_ref().is_some_and(|e| !e.name.is_null()).into()
}

#[unsafe(no_mangle)]
unsafe extern "C" fn dbus_error_free(error: *mut DbusError) {
    if let Some(error) = error.as_mut() {
        error.name = ptr::null();
        error.message = ptr::null();
    }
}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_pop_message(_conn: *mut c_void) -> *mut c_void {
    ptr::null_mut()
}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_read_write(_conn: *mut c_void, _timeout: c_int) -> u32 {
    0
}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_send(
    _conn: *mut c_void,
    _message: *mut c_void,
    _serial: *mut u32,
) -> u32 {
    0
}

#[unsafe(no_mangle)]
extern "C" fn dbus_message_is_signal(
    _message: *mut c_void,
    _interface: *const c_char,
    _name: *const c_char,
) -> u32 {
    0
}

#[unsafe(no_mangle)]
extern "C" fn dbus_message_marshal(
    _message: *mut c_void,
    _data: *mut *mut c_char,
    _len: *mut c_int,
) -> u32 {
    0
}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_flush(_conn: *mut c_void) {}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_set_max_received_size(_conn: *mut c_void, _size: c_long) {}

#[unsafe(no_mangle)]
extern "C" fn dbus_connection_unref(_conn: *mut c_void) {}

#[unsafe(no_mangle)]
extern "C" fn dbus_message_unref(_message: *mut c_void) {}

#[unsafe(no_mangle)]
extern "C" fn dbus_free(_memory: *mut c_void) {}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn connecting_fails_with_an_error_libpcap_can_print() {
        let mut error = DbusError {
            name: ptr::null(),
            message: ptr::null(),
        };
        // SAFETY: `error` is a live DbusError.
        unsafe {
            assert!(dbus_bus_get(0, &mut error).is_null());
            assert_eq!(dbus_error_is_set(&error), 1);
            let message = CStr::from_ptr(error.message).to_str().unwrap();
            assert_eq!(message, "ipft is built without D-Bus capture");
            dbus_error_free(&mut error);
            assert_eq!(dbus_error_is_set(&error), 0);
        }
    }
}
