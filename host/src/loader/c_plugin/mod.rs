//! C plugins: libraries that export `plugin_host_c_plugin_v1` (the contract is
//! `plugin-api/include/plugin_host.h`). Each instance is served through plugin-api's own
//! component interface ([`ComponentObj`]), so everything past the loader (the
//! coordinator, workers, the sandbox, streams, metrics) treats both kinds alike.
//!
//! The structs below mirror the header's, field for field; a struct read from a plugin is
//! copied only as far as its `size` says, later fields staying absent (zero: `None`).

// The FFI with C plugins: every unsafe block says why it holds.
#![allow(unsafe_code)]

mod description;
mod services;
mod spans;

use std::{
    ffi::{c_char, c_void, CStr},
    path::Path,
};

use abi_stable::{
    library::RawLibrary,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RVec},
};
use plugin_api::{
    ffi::{
        CallContextRef, CallFlags, ComponentBox, ComponentObj, ComponentObj_TO, HostBox,
        StreamSinkBox,
    },
    PluginError,
};

pub(crate) use self::description::parse as parse_description;
use self::{
    description::Invalid,
    services::{Out, PhOut, Services},
    spans::TraceScope,
};
use super::LoadError;

/// The symbol a C plugin exports.
pub(crate) const ENTRY_SYMBOL: &str = "plugin_host_c_plugin_v1";

/// The newest C ABI (`PLUGIN_HOST_C_ABI`) this host reads.
pub(crate) const ABI: u32 = 1;

/// `ph_str`: UTF-8 text by pointer and length.
#[repr(C)]
#[derive(Clone, Copy)]
struct PhStr {
    ptr: *const u8,
    len: usize,
}

impl PhStr {
    fn of(text: &str) -> Self {
        Self::of_bytes(text.as_bytes())
    }

    fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes, empty for a null pointer.
    ///
    /// # Safety
    ///
    /// A non-null `ptr` points at `len` readable bytes that outlive `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: as the contract says.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The text, invalid UTF-8 replaced.
    ///
    /// # Safety
    ///
    /// As [`Self::bytes`].
    unsafe fn text<'a>(self) -> std::borrow::Cow<'a, str> {
        // SAFETY: the same contract.
        String::from_utf8_lossy(unsafe { self.bytes() })
    }
}

/// The size and the offset of the last field of each struct mirrored from
/// `plugin_host.h`, by the C name: held against the C compiler's by a test.
pub(crate) fn layout() -> Vec<(&'static str, usize, usize)> {
    use std::mem::{offset_of, size_of};
    vec![
        ("ph_str", size_of::<PhStr>(), offset_of!(PhStr, len)),
        ("ph_out", size_of::<PhOut>(), services::PhOut::LAST),
        (
            "ph_host",
            size_of::<services::PhHost>(),
            services::PhHost::LAST,
        ),
        (
            "ph_call",
            size_of::<PhCall>(),
            offset_of!(PhCall, tracestate),
        ),
        ("ph_sink", size_of::<PhSink>(), offset_of!(PhSink, send)),
        (
            "ph_plugin",
            size_of::<PhPlugin>(),
            offset_of!(PhPlugin, drop),
        ),
    ]
}

/// `ph_call`.
#[repr(C)]
struct PhCall {
    size: u32,
    reserved: u32,
    ctx: *mut c_void,
    remaining_ns: extern "C" fn(*mut c_void) -> u64,
    is_cancelled: extern "C" fn(*mut c_void) -> i32,
    traceparent: PhStr,
    tracestate: PhStr,
}

impl PhCall {
    /// The trace scope of a traced call (none for an untraced one: nothing to do).
    fn trace_scope(&self) -> Option<TraceScope> {
        if self.traceparent.len == 0 {
            return None;
        }
        // SAFETY: the host made this `ph_call` from a context that outlives it.
        let traceparent = unsafe { self.traceparent.bytes() };
        std::str::from_utf8(traceparent).ok().map(TraceScope::enter)
    }
}

/// `ph_sink`.
#[repr(C)]
struct PhSink {
    size: u32,
    reserved: u32,
    ctx: *mut c_void,
    send: extern "C" fn(*mut c_void, *const c_void, usize) -> i32,
}

type Create =
    unsafe extern "C" fn(PhStr, *const services::PhHost, *mut *mut c_void, *const PhOut) -> i32;
type Call = unsafe extern "C" fn(*mut c_void, PhStr, PhStr, *const PhCall, *const PhOut) -> i32;
type Stream = unsafe extern "C" fn(
    *mut c_void,
    PhStr,
    PhStr,
    *const PhCall,
    *const PhSink,
    *const PhOut,
) -> i32;
type Drop = unsafe extern "C" fn(*mut c_void);

/// `ph_plugin`, as far as the plugin's `size` reaches.
#[repr(C)]
#[derive(Clone, Copy)]
struct PhPlugin {
    size: u32,
    abi: u32,
    description: *const c_char,
    create: Option<Create>,
    call: Option<Call>,
    stream: Option<Stream>,
    drop: Option<Drop>,
}

/// A C plugin's functions, read from the library (which stays mapped for good).
#[derive(Clone, Copy)]
pub(crate) struct CPlugin {
    abi: u32,
    create: Create,
    call: Call,
    stream: Option<Stream>,
    drop: Drop,
}

/// A C plugin opened in this process: its functions and its description's text.
pub(crate) struct Opened {
    pub(crate) plugin: CPlugin,
    pub(crate) description: String,
}

/// What a library is, looked at as a C plugin.
pub(crate) enum Probe {
    /// Not a C plugin: the library, to look at otherwise.
    NotC(RawLibrary),
    /// A C plugin, usable or not.
    C(Result<Opened, LoadError>),
}

/// Reads the C plugin in `library` (`path` to people): [`Probe::NotC`] when it exports
/// no [`ENTRY_SYMBOL`]. A C plugin's library is kept mapped for good (the header requires
/// its functions to be callable from any thread).
///
/// # Safety
///
/// As [`super::open_library`]: the entry point runs the plugin's code.
pub(crate) unsafe fn open(library: RawLibrary, path: &Path) -> Probe {
    type Entry = unsafe extern "C" fn() -> *const PhPlugin;
    let symbol = format!("{ENTRY_SYMBOL}\0");
    // SAFETY: a symbol of this name is the C contract's entry point, of this type.
    let Ok(entry) = (unsafe { library.get::<Entry>(symbol.as_bytes()) }).map(|entry| *entry) else {
        return Probe::NotC(library);
    };
    // The library stays mapped for good, as abi_stable keeps its own.
    std::mem::forget(library);
    let refuse = |reason: Invalid| LoadError::CPlugin {
        path: path.to_owned(),
        reason: reason.to_string(),
    };
    // SAFETY: the entry point takes nothing and returns a pointer to a static.
    let table = unsafe { entry() };
    if table.is_null() {
        return Probe::C(Err(refuse(Invalid::NoTable)));
    }
    // SAFETY: the entry point returns a `ph_plugin`, whose first two fields are its size
    // and ABI whatever its version; the rest is read as far as `size` says.
    let (plugin, description) = match unsafe { read_table(table) } {
        Ok(read) => read,
        Err(reason) => return Probe::C(Err(refuse(reason))),
    };
    if plugin.abi > ABI {
        return Probe::C(Err(LoadError::CAbiTooNew {
            path: path.to_owned(),
            plugin_abi: plugin.abi,
            host_abi: ABI,
        }));
    }
    Probe::C(Ok(Opened {
        plugin,
        description,
    }))
}

/// Reads the `ph_plugin` at `table`, refusing one that lacks a function or a description.
///
/// # Safety
///
/// `table` points at a `ph_plugin` of at least its two leading `u32`s, and of `size` bytes.
unsafe fn read_table(table: *const PhPlugin) -> Result<(CPlugin, String), Invalid> {
    // SAFETY: the two leading fields are always there.
    let (size, abi) = unsafe { ((*table).size, (*table).abi) };
    if abi == 0 || (size as usize) < 2 * std::mem::size_of::<u32>() {
        return Err(Invalid::Header { size, abi });
    }
    let mut copy = PhPlugin {
        size,
        abi,
        description: std::ptr::null(),
        create: None,
        call: None,
        stream: None,
        drop: None,
    };
    let len = (size as usize).min(std::mem::size_of::<PhPlugin>());
    // SAFETY: `len` bytes are readable at `table` (its size says so) and fit in `copy`;
    // every bit pattern the plugin may leave is valid for these fields (pointers and
    // optional function pointers).
    unsafe {
        std::ptr::copy_nonoverlapping(
            table.cast::<u8>(),
            std::ptr::from_mut(&mut copy).cast::<u8>(),
            len,
        );
    }
    if copy.description.is_null() {
        return Err(Invalid::Missing("description"));
    }
    // SAFETY: the header makes it a NUL-terminated string in the library.
    let description = unsafe { CStr::from_ptr(copy.description) }
        .to_str()
        .map_err(|_| Invalid::NotUtf8)?
        .to_owned();
    let plugin = CPlugin {
        abi,
        create: copy.create.ok_or(Invalid::Missing("create function"))?,
        call: copy.call.ok_or(Invalid::Missing("call function"))?,
        stream: copy.stream,
        drop: copy.drop.ok_or(Invalid::Missing("drop function"))?,
    };
    Ok((plugin, description))
}

impl CPlugin {
    /// The C ABI the plugin was built against.
    pub(crate) fn abi(&self) -> u32 {
        self.abi
    }

    /// Creates component `component` of `plugin`, served through plugin-api's interface.
    pub(crate) fn create(
        &self,
        plugin: &str,
        component: &str,
        host: HostBox,
    ) -> Result<ComponentBox, PluginError> {
        let services = Services::new(plugin, component, host);
        let mut instance = std::ptr::null_mut();
        let mut error = Out::default();
        // SAFETY: the arguments are valid for the call; `services` (and the `ph_host`
        // inside it) lives as long as the instance, as the header promises.
        let status = unsafe {
            (self.create)(
                PhStr::of(component),
                services.ph_host(),
                &mut instance,
                &error.ph_out(),
            )
        };
        if status != 0 {
            return Err(services::error_of(status, "create", error));
        }
        let instance = Instance {
            plugin: *self,
            instance,
            _services: services,
        };
        Ok(ComponentObj_TO::from_value(instance, TD_Opaque))
    }
}

/// One C component instance.
struct Instance {
    plugin: CPlugin,
    instance: *mut c_void,
    /// What its `ph_host` points at: kept until the instance is dropped.
    _services: Box<Services>,
}

// SAFETY: the header requires an instance to be usable from any thread, concurrently.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl std::ops::Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: no call runs on the instance any more (it is being dropped).
        unsafe { (self.plugin.drop)(self.instance) };
    }
}

/// What `ph_call` offers for a call without a context.
extern "C" fn no_deadline(_: *mut c_void) -> u64 {
    u64::MAX
}

extern "C" fn never_cancelled(_: *mut c_void) -> i32 {
    0
}

extern "C" fn remaining(ctx: *mut c_void) -> u64 {
    // SAFETY: `ctx` is the `CallContextRef` lent for this call (see `call_of`).
    let context = unsafe { &*ctx.cast::<CallContextRef<'_>>() };
    context.remaining_nanos()
}

extern "C" fn cancelled(ctx: *mut c_void) -> i32 {
    // SAFETY: as in `remaining`.
    let context = unsafe { &*ctx.cast::<CallContextRef<'_>>() };
    i32::from(context.is_cancelled())
}

/// The `ph_call` for a call without a context.
fn bare_call() -> PhCall {
    PhCall {
        size: std::mem::size_of::<PhCall>() as u32,
        reserved: 0,
        ctx: std::ptr::null_mut(),
        remaining_ns: no_deadline,
        is_cancelled: never_cancelled,
        traceparent: PhStr::of(""),
        tracestate: PhStr::of(""),
    }
}

/// The `ph_call` of `context`, which must outlive it.
fn call_of(context: &CallContextRef<'_>, flags: CallFlags) -> PhCall {
    let (traceparent, tracestate) = if flags.contains(CallFlags::TRACED) {
        (context.traceparent(), context.tracestate())
    } else {
        (RStr::from_str(""), RStr::from_str(""))
    };
    PhCall {
        ctx: std::ptr::from_ref(context).cast_mut().cast(),
        remaining_ns: remaining,
        is_cancelled: cancelled,
        traceparent: PhStr::of(traceparent.as_str()),
        tracestate: PhStr::of(tracestate.as_str()),
        ..bare_call()
    }
}

extern "C" fn send(ctx: *mut c_void, item: *const c_void, len: usize) -> i32 {
    // SAFETY: `ctx` is the sink lent for this stream (see `Instance::run_stream`).
    let sink = unsafe { &*ctx.cast::<StreamSinkBox>() };
    let item = PhStr {
        ptr: item.cast(),
        len,
    };
    // SAFETY: the plugin passes `len` readable bytes.
    let bytes = unsafe { item.bytes() };
    let listening = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sink.send(RVec::from(bytes))
    }));
    i32::from(listening.unwrap_or(false))
}

impl Instance {
    fn run_call(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        call: &PhCall,
    ) -> RResult<RVec<u8>, PluginError> {
        let _trace = call.trace_scope();
        let mut out = Out::default();
        let input = PhStr::of_bytes(input.as_slice());
        // SAFETY: every argument is valid until the call returns.
        let status = unsafe {
            (self.plugin.call)(
                self.instance,
                PhStr::of(method.as_str()),
                input,
                call,
                &out.ph_out(),
            )
        };
        if status == 0 {
            RResult::ROk(RVec::from(out.into_bytes()))
        } else {
            RResult::RErr(services::error_of(status, method.as_str(), out))
        }
    }

    fn run_stream(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: StreamSinkBox,
        call: &PhCall,
    ) -> RResult<(), PluginError> {
        let _trace = call.trace_scope();
        let Some(stream) = self.plugin.stream else {
            return RResult::RErr(PluginError::with_kind(
                "not_streaming",
                format!("method `{method}` cannot stream: the C plugin has no stream function"),
            ));
        };
        let ph_sink = PhSink {
            size: std::mem::size_of::<PhSink>() as u32,
            reserved: 0,
            ctx: std::ptr::from_ref(&sink).cast_mut().cast(),
            send,
        };
        let mut error = Out::default();
        let input = PhStr::of_bytes(input.as_slice());
        // SAFETY: every argument (the sink included) is valid until the call returns.
        let status = unsafe {
            stream(
                self.instance,
                PhStr::of(method.as_str()),
                input,
                call,
                &ph_sink,
                &error.ph_out(),
            )
        };
        if status == 0 {
            RResult::ROk(())
        } else {
            RResult::RErr(services::error_of(status, method.as_str(), error))
        }
    }
}

impl ComponentObj for Instance {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        self.run_call(method, input, &bare_call())
    }

    fn stream(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: StreamSinkBox,
    ) -> RResult<(), PluginError> {
        self.run_stream(method, input, sink, &bare_call())
    }

    fn call_in(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        context: CallContextRef<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        self.run_call(method, input, &call_of(&context, CallFlags::TRACED))
    }

    fn stream_in(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: StreamSinkBox,
        context: CallContextRef<'_>,
    ) -> RResult<(), PluginError> {
        self.run_stream(method, input, sink, &call_of(&context, CallFlags::TRACED))
    }

    fn call_with(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        context: &CallContextRef<'_>,
        flags: CallFlags,
    ) -> RResult<RVec<u8>, PluginError> {
        self.run_call(method, input, &call_of(context, flags))
    }
}
