//! The configuration loader: any TOML text gives a configuration or an error that names
//! the key at fault (or, for text that is not TOML at all, where it stops being TOML); a
//! loaded configuration written out as TOML loads back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => {
            let written = config.to_toml();
            match Config::from_toml_str(&written) {
                Ok(again) => assert_eq!(again, config, "written as {written}"),
                Err(e) => panic!("written as {written}\nloads as: {e}"),
            }
        }
        Err(e) => {
            let message = e.to_string();
            let is_toml = text.parse::<toml::Table>().is_ok();
            let names_key = message.contains("configuration key `") || message.contains("for key ");
            let names_place = message.contains("line ") && message.contains("column ");
            assert!(
                names_key || (!is_toml && names_place),
                "error names no key: {message}\ninput: {text:?}"
            );
        }
    }
});
