//! Binds libjpeg's compression API (`jpeglib.h`) from the libjpeg-turbo that `turbojpeg-sys`
//! builds and links, so that the file source can feed the compressor a band of rows at a time
//! (`jpeg_write_raw_data`), which turbojpeg's whole-picture API cannot.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The file source (both features) is the only user.
    #[cfg(all(feature = "jpeg", feature = "ffmpeg"))]
    jpeglib();
}

#[cfg(all(feature = "jpeg", feature = "ffmpeg"))]
fn jpeglib() {
    // turbojpeg-sys (`links = "turbojpeg"`) gives its include directories, comma-separated.
    // Its vendored static build (what Cargo.toml asks for) always does, and it exports
    // libjpeg's own functions, which a shared libturbojpeg hides.
    let include = std::env::var("DEP_TURBOJPEG_INCLUDE").expect(
        "turbojpeg-sys gave no include directory: framecast needs its vendored static \
         libjpeg-turbo (leave TURBOJPEG_SOURCE, TURBOJPEG_DYNAMIC and TURBOJPEG_SHARED unset)",
    );
    let mut b = bindgen::Builder::default()
        // jpeglib.h needs size_t and FILE declared first.
        .header_contents(
            "jpeglib_wrapper.h",
            "#include <stddef.h>\n#include <stdio.h>\n#include <jpeglib.h>\n",
        )
        .allowlist_function("jpeg_(CreateCompress|destroy_compress|abort_compress|std_error|set_defaults|set_quality|set_colorspace|start_compress|write_raw_data|finish_compress)")
        .allowlist_type("jpeg_compress_struct|jpeg_error_mgr|jpeg_destination_mgr")
        .allowlist_var("JPEG_LIB_VERSION|JMSG_LENGTH_MAX|DCTSIZE")
        // libjpeg reports errors through `error_exit`, which must not return: ours unwinds
        // (a Rust panic payload) through libjpeg's frames back to the call that failed.
        .override_abi(bindgen::Abi::CUnwind, ".*")
        .layout_tests(false)
        .derive_default(false);
    for dir in include.split(',').filter(|d| !d.is_empty()) {
        println!("cargo:rerun-if-changed={dir}/jpeglib.h");
        b = b.clang_arg(format!("-I{dir}"));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    b.generate()
        .expect("cannot bind jpeglib.h (bindgen needs libclang: scripts/setup.sh installs it)")
        .write_to_file(out.join("jpeglib.rs"))
        .expect("cannot write the jpeglib bindings");
}
