//! Output forms of a parsed Dockerfile: [`dump`], BuildKit's parser-test
//! `result` format (`(copy ["--from=build"] "/out" "/bin/app")`, Go
//! `strconv.Quote` quoting), and [`to_json`], the documented JSON form.

use serde_json::{json, Value};

use crate::dockerfile::instruction::Instruction;
use crate::dockerfile::Dockerfile;

/// Quotes `s` as Go's `strconv.Quote` does: `\"`, `\\`, the C escapes
/// (`\a \b \f \n \r \t \v`), `\xHH` for other ASCII controls, `\uHHHH` /
/// `\UHHHHHHHH` for other non-printable characters; printable Unicode is
/// kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !is_go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: controls, separators other
/// than the ASCII space, format characters, private-use characters and
/// noncharacters are not printable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xfdd0..=0xfdef | 0xfffe | 0xffff | 0xf0000..=0x10ffff
    ) && (u & 0xfffe) != 0xfffe
}

/// One instruction in BuildKit's dump format, without the outer
/// parentheses: `copy ["--from=build"] "/out" "/bin/app"`.
fn node(inst: &Instruction) -> String {
    let source = inst.source();
    let mut out = source.keyword.as_str().to_ascii_lowercase();
    if !source.flags.is_empty() {
        let flags: Vec<String> = source.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    if let Instruction::Onbuild(o) = inst {
        out.push_str(&format!(" ({})", node(&o.inner)));
    }
    for arg in &source.args {
        out.push(' ');
        out.push_str(&go_quote(arg));
    }
    out
}

/// One instruction in BuildKit's dump format: `(run "echo hi")`.
pub fn dump_instruction(inst: &Instruction) -> String {
    format!("({})", node(inst))
}

/// The whole Dockerfile in BuildKit's parser-test `result` format: one line
/// per instruction, each ending in a newline.
pub fn dump(dockerfile: &Dockerfile) -> String {
    let mut out = String::new();
    for inst in &dockerfile.instructions {
        out.push_str(&dump_instruction(inst));
        out.push('\n');
    }
    out
}

fn instruction_json(inst: &Instruction) -> Value {
    let source = inst.source();
    let heredocs: Vec<Value> = inst
        .heredocs()
        .into_iter()
        .map(|h| {
            json!({
                "name": h.name,
                "content": h.content,
                "expand": h.expand,
                "strip_tabs": h.strip_tabs,
                "fd": h.fd,
            })
        })
        .collect();
    let mut v = json!({
        "keyword": source.keyword.as_str().to_ascii_lowercase(),
        "span": { "start_line": source.span.start_line, "end_line": source.span.end_line },
        "flags": source.flags,
        "arguments": source.args,
        "json_form": source.json,
        "heredocs": heredocs,
        "original": source.original,
    });
    if let (Instruction::Onbuild(o), Some(map)) = (inst, v.as_object_mut()) {
        map.insert("trigger".to_string(), instruction_json(&o.inner));
    }
    v
}

/// The Dockerfile as JSON (schema in README.md, "imgb parse"): directives,
/// global ARGs, stages with their instructions, warnings.
pub fn to_json(dockerfile: &Dockerfile) -> Value {
    let stages = dockerfile.stages();
    let global_args: Vec<Value> = dockerfile
        .instructions
        .iter()
        .take_while(|i| !matches!(i, Instruction::From(_)))
        .map(instruction_json)
        .collect();
    let first_from = global_args.len();
    let mut rest = dockerfile.instructions[first_from..].iter();
    let stage_values: Vec<Value> = stages
        .stages
        .iter()
        .map(|stage| {
            let mut instructions = Vec::with_capacity(stage.instructions.len() + 1);
            if let Some(from) = rest.next() {
                instructions.push(instruction_json(from));
            }
            for _ in stage.instructions {
                if let Some(i) = rest.next() {
                    instructions.push(instruction_json(i));
                }
            }
            json!({
                "index": stage.index,
                "name": stage.name(),
                "base": stage.from.image,
                "platform": stage.from.platform,
                "instructions": instructions,
            })
        })
        .collect();
    let warnings: Vec<Value> = dockerfile
        .warnings
        .iter()
        .map(|w| json!({ "line": w.line, "kind": w.kind, "message": w.message }))
        .collect();
    json!({
        "directives": {
            "syntax": dockerfile.directives.syntax,
            "escape": dockerfile.directives.escape.to_string(),
            "check": dockerfile.directives.check,
        },
        "global_args": global_args,
        "stages": stage_values,
        "warnings": warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("héllo ☃"), "\"héllo ☃\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
    }
}
