//! Fuzz target: any input must parse or fail cleanly, and whatever parses
//! must dump, serialise, group into stages and expand without panicking.
#![no_main]

use imgb::dockerfile::{self, Lexer};
use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    (name.len() % 2 == 0).then(|| format!("{name} *.v"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Lexer::new('\\').process(text, &lookup);
    let _ = Lexer::new('`').without_quotes().process(text, &lookup);
    if let Ok(df) = dockerfile::parse(text) {
        let _ = dockerfile::dump(&df);
        let _ = dockerfile::to_json(&df);
        let _ = df.stages();
        for inst in &df.instructions {
            let _ = inst.expand(&lookup, df.escape());
            for h in inst.heredocs() {
                let _ = h.expanded(&lookup, df.escape());
            }
        }
    }
});
