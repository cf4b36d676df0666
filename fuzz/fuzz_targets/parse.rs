//! Feeds arbitrary bytes to the Cblockfile parser: the syntax layer and its
//! dump, the checked layer, and word expansion. Any panic or hang is a bug;
//! every input must end in a value or an error.

#![no_main]

use cblocks::cblockfile::{self, word::Lexer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = cblockfile::parse_syntax("Cblockfile", data) {
        let _ = cblockfile::dump::dump(&tree.nodes);
    }
    if let Ok(file) = cblockfile::parse("Cblockfile", data) {
        for stage in &file.stages {
            let _ = file.image_entrypoint(stage);
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let vars = vec![
            ("PWD".to_string(), "/home".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        for escape in ['\\', '`'] {
            let lexer = Lexer::new(escape);
            let _ = lexer.expand_word(text, &vars);
            let _ = lexer.expand_words(text, &vars);
        }
        let _ = cblockfile::ignore::Patterns::parse(text);
    }
});
