//! Baseline JPEG from planar YCbCr a band of rows at a time, through libjpeg's raw-data API
//! (`jpeg_write_raw_data`) on the libjpeg-turbo that turbojpeg wraps (bindings made by
//! `build.rs` from its own `jpeglib.h`).
//!
//! turbojpeg's `tj3CompressFromYUVPlanes8` runs the same loop over the caller's planes, so a
//! TV-range decode would first need a whole stretched copy, which has left the core's cache by
//! the time the encoder reads it back. Here each band (one MCU row: 16 luma rows at 4:2:0) is
//! copied from the decoder's planes into a small buffer (stretched to full range on the way
//! when the planes are TV range, padded to whole blocks as turbojpeg pads), handed to libjpeg
//! while it is still in L1/L2 cache, and the next band reuses the buffer. The compressor is
//! set up as turbojpeg sets up its own (quality tables with `force_baseline`, standard
//! Huffman tables, the fast integer DCT, JFIF), so the JPEG is byte for byte turbojpeg's from
//! the same full-range planes (tested).

use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::NonNull;

use super::yuv::{Range, YuvPlanes, plane_sizes, stretch_into};
use crate::media::Subsampling;

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::all
)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/jpeglib.rs"));
}

/// libjpeg's `TRUE`.
const TRUE: ffi::boolean = 1;
/// libjpeg's `FALSE`.
const FALSE: ffi::boolean = 0;

/// Why libjpeg refused a picture: its own message (JPEG's errors are carried out of libjpeg by
/// unwinding, see [`error_exit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("libjpeg: {0}")]
pub struct BandError(pub String);

/// The payload [`error_exit`] unwinds with.
struct Failure(String);

/// libjpeg's message for its current error (`format_message`).
///
/// # Safety
/// `cinfo` is a live libjpeg object with an error manager.
unsafe fn message(cinfo: ffi::j_common_ptr) -> String {
    let mut buf = [0 as c_char; ffi::JMSG_LENGTH_MAX as usize];
    // SAFETY: the caller's promise; format_message writes at most JMSG_LENGTH_MAX bytes,
    // NUL-terminated.
    unsafe {
        match (*(*cinfo).err).format_message {
            Some(f) => {
                f(cinfo, buf.as_mut_ptr());
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            }
            None => "unknown error".into(),
        }
    }
}

/// libjpeg's fatal-error hook, which must not return: unwinds (without the panic hook, so
/// nothing is printed) to the `catch_unwind` around the call into libjpeg, which turns it into
/// a [`BandError`]. Every libjpeg function is bound as `extern "C-unwind"`; unwinding through
/// its C frames needs the unwind tables GCC and Clang emit by default on x86-64 and AArch64
/// Linux (not on every target, nor with `-fno-asynchronous-unwind-tables`). Errors arise only
/// from shapes libjpeg refuses (wider or taller than 65500) or a failed allocation.
unsafe extern "C-unwind" fn error_exit(cinfo: ffi::j_common_ptr) {
    // SAFETY: libjpeg calls this with its live object.
    let msg = unsafe { message(cinfo) };
    resume_unwind(Box::new(Failure(msg)));
}

/// libjpeg's warnings go to the log, not to stderr.
unsafe extern "C-unwind" fn output_message(cinfo: ffi::j_common_ptr) {
    // SAFETY: libjpeg calls this with its live object.
    log::debug!("libjpeg: {}", unsafe { message(cinfo) });
}

/// A destination that writes the JPEG into a `Vec` (libjpeg's `jpeg_destination_mgr` first, so
/// that libjpeg's pointer to it is a pointer to this). Owned by [`BandCompressor`] as a raw
/// allocation that both it and libjpeg reach only through the one pointer.
#[repr(C)]
struct VecDest {
    mgr: ffi::jpeg_destination_mgr,
    /// The JPEG so far: `len()` is set when libjpeg hands a buffer back.
    out: Vec<u8>,
    /// Capacity to start a picture with (bytes): a little above the last picture's size.
    hint: usize,
}

/// # Safety
/// `cinfo.dest` is the `VecDest` this module installed.
unsafe fn vec_dest<'a>(cinfo: ffi::j_compress_ptr) -> &'a mut VecDest {
    // SAFETY: the caller's promise; `mgr` is the first field of a repr(C) struct.
    unsafe { &mut *(*cinfo).dest.cast::<VecDest>() }
}

unsafe extern "C-unwind" fn init_destination(cinfo: ffi::j_compress_ptr) {
    // SAFETY: installed by `BandCompressor::new`.
    let d = unsafe { vec_dest(cinfo) };
    d.out.clear();
    d.out.reserve(d.hint.max(4096));
    d.mgr.next_output_byte = d.out.as_mut_ptr();
    d.mgr.free_in_buffer = d.out.capacity();
}

/// The buffer is full (libjpeg's contract: all of it, whatever `free_in_buffer` says): keep it
/// and give libjpeg as much room again.
unsafe extern "C-unwind" fn empty_output_buffer(cinfo: ffi::j_compress_ptr) -> ffi::boolean {
    // SAFETY: installed by `BandCompressor::new`.
    let d = unsafe { vec_dest(cinfo) };
    let full = d.out.capacity();
    // SAFETY: libjpeg wrote every byte of the capacity it was given.
    unsafe { d.out.set_len(full) };
    d.out.reserve(full);
    // SAFETY: `full` is within the (new) allocation.
    d.mgr.next_output_byte = unsafe { d.out.as_mut_ptr().add(full) };
    d.mgr.free_in_buffer = d.out.capacity() - full;
    TRUE
}

unsafe extern "C-unwind" fn term_destination(cinfo: ffi::j_compress_ptr) {
    // SAFETY: installed by `BandCompressor::new`.
    let d = unsafe { vec_dest(cinfo) };
    let len = d.out.capacity() - d.mgr.free_in_buffer;
    // SAFETY: libjpeg wrote the bytes up to `next_output_byte`.
    unsafe { d.out.set_len(len) };
}

/// A libjpeg compressor for [`YuvPlanes`], fed a band of rows at a time (see the module docs).
/// One per thread; it keeps its band buffer and libjpeg object for every picture.
pub struct BandCompressor {
    // Boxed: libjpeg keeps pointers to the error manager and the destination.
    cinfo: Box<ffi::jpeg_compress_struct>,
    err: Box<ffi::jpeg_error_mgr>,
    /// `Box::into_raw` of the destination, freed in `drop`.
    dest: NonNull<VecDest>,
    quality: u8,
    /// One band of every component, each row padded to whole blocks.
    band: Vec<u8>,
}

// SAFETY: the libjpeg object, its destination and buffers have no thread affinity; all are
// owned here and used by one thread at a time (`&mut self`).
unsafe impl Send for BandCompressor {}

/// Runs `f`, turning a libjpeg error unwound by [`error_exit`] into a [`BandError`].
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, BandError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(libjpeg_error)
}

/// The [`BandError`] of an unwind caught around libjpeg: its [`Failure`]; any other panic is
/// carried on.
fn libjpeg_error(payload: Box<dyn std::any::Any + Send>) -> BandError {
    match payload.downcast::<Failure>() {
        Ok(f) => BandError(f.0),
        Err(other) => resume_unwind(other),
    }
}

impl BandCompressor {
    /// A compressor at `quality` (1..=100, checked by the caller).
    pub fn new(quality: u8) -> Result<BandCompressor, BandError> {
        // SAFETY: both libjpeg structs are plain C data for which all-zero is a valid
        // (empty) value; jpeg_std_error and jpeg_CreateCompress fill them in.
        let mut c = BandCompressor {
            cinfo: Box::new(unsafe { std::mem::zeroed() }),
            err: Box::new(unsafe { std::mem::zeroed() }),
            dest: NonNull::from(Box::leak(Box::new(VecDest {
                mgr: ffi::jpeg_destination_mgr {
                    next_output_byte: std::ptr::null_mut(),
                    free_in_buffer: 0,
                    init_destination: Some(init_destination),
                    empty_output_buffer: Some(empty_output_buffer),
                    term_destination: Some(term_destination),
                },
                out: Vec::new(),
                hint: 0,
            }))),
            quality,
            band: Vec::new(),
        };
        let cinfo: *mut ffi::jpeg_compress_struct = &mut *c.cinfo;
        let err: *mut ffi::jpeg_error_mgr = &mut *c.err;
        // SAFETY: `err` and `cinfo` are boxed (they stay put) and live as long as `c`, which
        // destroys the object when dropped; the hooks are ours.
        unsafe {
            (*cinfo).err = ffi::jpeg_std_error(err);
            (*err).error_exit = Some(error_exit);
            (*err).output_message = Some(output_message);
        }
        // SAFETY: as above; the size is the struct this build was bound against.
        guarded(|| unsafe {
            ffi::jpeg_CreateCompress(
                cinfo,
                ffi::JPEG_LIB_VERSION as c_int,
                std::mem::size_of::<ffi::jpeg_compress_struct>(),
            )
        })?;
        // SAFETY: the destination lives until `drop`, after the object is destroyed.
        unsafe { (*cinfo).dest = c.dest.as_ptr().cast() };
        Ok(c)
    }

    /// Compresses consistent planes ([`YuvPlanes::is_consistent`]) into a baseline JPEG with
    /// their subsampling, stretching TV-range samples to full range band by band. Errors if
    /// libjpeg refuses the picture.
    pub fn compress(&mut self, p: &YuvPlanes) -> Result<Vec<u8>, BandError> {
        let cinfo: *mut ffi::jpeg_compress_struct = &mut *self.cinfo;
        // SAFETY: `p` is consistent (the caller's promise), so every row `bands` reads lies
        // within its plane; the object is live and set up by `new`.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe {
            self.compress_unguarded(cinfo, p)
        }));
        // SAFETY: libjpeg is not running: the destination is ours alone again.
        let dest = unsafe { &mut *self.dest.as_ptr() };
        let jpeg = std::mem::take(&mut dest.out);
        match r {
            Ok(()) => {
                // The next picture starts with room for this one and an eighth more.
                dest.hint = jpeg.len() + jpeg.len() / 8;
                Ok(jpeg)
            }
            Err(payload) => {
                // SAFETY: the object is live; aborting returns it to its idle state, ready
                // for the next picture, whatever stopped this one.
                unsafe { ffi::jpeg_abort_compress(cinfo) };
                Err(libjpeg_error(payload))
            }
        }
    }

    /// # Safety
    /// `cinfo` is `self.cinfo`; `p` is consistent.
    unsafe fn compress_unguarded(&mut self, cinfo: *mut ffi::jpeg_compress_struct, p: &YuvPlanes) {
        let gray = p.subsampling == Subsampling::Gray;
        // Luma's sampling factors; chroma's are 1 (turbojpeg's tjMCUWidth / 8, tjMCUHeight / 8).
        let (h_samp, v_samp) = match p.subsampling {
            Subsampling::Yuv420 => (2, 2),
            Subsampling::Yuv422 => (2, 1),
            Subsampling::Yuv444 | Subsampling::Gray => (1, 1),
        };
        // SAFETY (the whole block): `cinfo` is live; libjpeg's calls in the order its API
        // asks for; `comp_info` has room for every component once set_defaults ran.
        unsafe {
            (*cinfo).image_width = p.width;
            (*cinfo).image_height = p.height;
            (*cinfo).data_precision = 8;
            (*cinfo).in_color_space = ffi::J_COLOR_SPACE_JCS_RGB;
            (*cinfo).input_components = 3;
            ffi::jpeg_set_defaults(cinfo);
            ffi::jpeg_set_quality(cinfo, c_int::from(self.quality), TRUE);
            (*cinfo).dct_method = ffi::J_DCT_METHOD_JDCT_IFAST;
            let space = if gray {
                ffi::J_COLOR_SPACE_JCS_GRAYSCALE
            } else {
                ffi::J_COLOR_SPACE_JCS_YCbCr
            };
            ffi::jpeg_set_colorspace(cinfo, space);
            (*cinfo).optimize_coding = FALSE;
            let n = ((*cinfo).num_components as usize).min(3);
            for i in 0..n {
                let comp = (*cinfo).comp_info.add(i);
                ((*comp).h_samp_factor, (*comp).v_samp_factor) =
                    if i == 0 { (h_samp, v_samp) } else { (1, 1) };
            }
            (*cinfo).raw_data_in = TRUE;
            ffi::jpeg_start_compress(cinfo, TRUE);

            // Each component's band: `th` rows of `iw` samples (whole blocks), filled from
            // the plane's `pw x ph` samples as turbojpeg fills its own padding buffer.
            let sizes = plane_sizes(p.width, p.height, p.subsampling);
            let max_v = (*cinfo).max_v_samp_factor as usize;
            // (iw, th, offset in `band`); th is 8 x the component's vertical sampling factor.
            let mut shape = [(0usize, 0usize, 0usize); 3];
            let mut total = 0;
            for (i, s) in shape.iter_mut().enumerate().take(n) {
                let comp = (*cinfo).comp_info.add(i);
                let iw = (*comp).width_in_blocks as usize * 8;
                let th = (*comp).v_samp_factor as usize * 8;
                *s = (iw, th, total);
                total += iw * th;
            }
            self.band.resize(total, 0);
            // Every access to the band below goes through `base`, as libjpeg's do.
            let base = self.band.as_mut_ptr();
            let mut rows: [[*mut u8; 16]; 3] = [[std::ptr::null_mut(); 16]; 3];
            for (i, &(iw, th, off)) in shape.iter().enumerate().take(n) {
                for (j, r) in rows[i].iter_mut().enumerate().take(th) {
                    *r = base.add(off + j * iw);
                }
            }
            let mut image: [*mut *mut u8; 3] = [
                rows[0].as_mut_ptr(),
                rows[1].as_mut_ptr(),
                rows[2].as_mut_ptr(),
            ];
            let band_rows = max_v * 8;
            for row in (0..p.height as usize).step_by(band_rows) {
                for (i, &(iw, th, off)) in shape.iter().enumerate().take(n) {
                    let (pw, ph) = sizes[i];
                    let (src, stride) = p.planes[i];
                    // This component's first row of the band: th / 8 of its rows per max_v.
                    let crow = row * (th / 8) / max_v;
                    let have = th.min(ph - crow);
                    let range = match (p.tv_range, i) {
                        (false, _) => Range::Full,
                        (true, 0) => Range::TvLuma,
                        (true, _) => Range::TvChroma,
                    };
                    let band = std::slice::from_raw_parts_mut(base.add(off), iw * th);
                    for j in 0..have {
                        let y = crow + j;
                        let dst = &mut band[j * iw..(j + 1) * iw];
                        stretch_into(&mut dst[..pw], &src[y * stride..y * stride + pw], range);
                        // The last sample repeated to a whole block.
                        let edge = dst[pw - 1];
                        dst[pw..].fill(edge);
                    }
                    // The last row repeated to a whole band.
                    for j in have..th {
                        band.copy_within((have - 1) * iw..have * iw, j * iw);
                    }
                }
                ffi::jpeg_write_raw_data(cinfo, image.as_mut_ptr(), band_rows as u32);
            }
            ffi::jpeg_finish_compress(cinfo);
        }
    }
}

impl Drop for BandCompressor {
    fn drop(&mut self) {
        // SAFETY: the object was created in `new` and is destroyed once, here; then the
        // destination it pointed to is freed, once.
        let _ = guarded(|| unsafe { ffi::jpeg_destroy_compress(&mut *self.cinfo) });
        drop(unsafe { Box::from_raw(self.dest.as_ptr()) });
    }
}
