//! Feeds arbitrary bytes to the Cblockfile parser: the syntax layer and its
//! dump, the checked layer, word expansion and ignore patterns. Any panic or
//! hang is a bug, because every input must end in a value or an error.

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
            let _ = file.stages_for(stage.index);
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
        if let Ok(patterns) = cblockfile::ignore::Patterns::parse(text) {
            for path in ["a", "a/b/c.txt", "node_modules/x/y.js", ".git/HEAD"] {
                let _ = patterns.is_excluded(path);
            }
        }
    }
});
