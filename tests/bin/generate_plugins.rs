//! `generate-plugins DIR COUNT`: writes COUNT distinct plugins (`libgen_0000.so`, ...,
//! plugin and component `gen-0000`, ...) into DIR, copies of one built library. Run with
//! `cargo run -p plugin-host-tests --bin generate-plugins -- DIR COUNT`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(count)) = (args.first(), args.get(1).and_then(|c| c.parse().ok())) else {
        eprintln!("usage: generate-plugins DIR COUNT");
        return std::process::ExitCode::from(2);
    };
    match plugin_host_tests::generate_plugins(std::path::Path::new(dir), count) {
        Ok(()) => {
            println!("{count} plugins in {dir}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot write plugins into {dir}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
