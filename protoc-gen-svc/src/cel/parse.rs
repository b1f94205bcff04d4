//! Lexer and recursive-descent parser for CEL expressions (the language of protovalidate `cel` rules).
//!
//! Follows the grammar of the CEL language definition
//! (<https://github.com/google/cel-spec/blob/master/doc/langdef.md>). [`parse`] turns source text into an
//! [`Expr`] tree or a [`SyntaxError`] with its position. The macros `has`, `all`, `exists`, `exists_one`,
//! `map` and `filter` become [`Expr::Has`] and [`Expr::Comprehension`] nodes; a unary minus directly before a
//! numeric literal is folded into the literal (so `-9223372036854775808` is `Int(i64::MIN)`).
//!
//! Nesting is limited (100 levels of parentheses, brackets, arguments or conditionals, and a tree depth of
//! 250), so parsing never overflows the stack and the trees returned are safe to walk recursively.

use std::fmt;

/// A parsed CEL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A signed integer literal (`1`, `-0x10`).
    Int(i64),
    /// An unsigned integer literal (`1u`, `0xFFu`).
    Uint(u64),
    /// A floating-point literal (`1.5`, `1e3`, `.5`).
    Double(f64),
    /// A string literal, escapes resolved.
    Str(String),
    /// A bytes literal (`b'...'`), escapes resolved.
    Bytes(Vec<u8>),
    /// An identifier, possibly a leading-dot one (`.foo` keeps the dot).
    Ident(String),
    /// `operand.field`
    Select(Box<Expr>, String),
    /// `has(operand.field)`
    Has(Box<Expr>, String),
    /// A function or method call: `f(args)` (target None) or `target.f(args)`.
    Call {
        /// The receiver of a method call; `None` for a global call.
        target: Option<Box<Expr>>,
        /// The function name (a global call through a leading dot keeps the dot: `.f`).
        function: String,
        /// The arguments, in order.
        args: Vec<Expr>,
    },
    /// A unary operator applied to an operand.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operator applied to two operands.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `cond ? then : otherwise`
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `operand[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `[a, b, ...]`
    List(Vec<Expr>),
    /// `{key: value, ...}`
    Map(Vec<(Expr, Expr)>),
    /// `Name{field: value, ...}` (message construction); name as written, dots included.
    Struct {
        /// The message type name as written (`google.protobuf.Duration`, `.pkg.Msg`).
        name: String,
        /// The field initializers, in order.
        fields: Vec<(String, Expr)>,
    },
    /// The macros `all`, `exists`, `exists_one`, `map` (2 or 3 args: with a filter), `filter`
    /// on a range: `range.all(var, body)` etc. Two-variable forms are not supported.
    Comprehension {
        /// Which macro.
        kind: Macro,
        /// The list or map iterated over.
        range: Box<Expr>,
        /// The iteration variable.
        var: String,
        /// The filter of the three-argument `map(var, filter, body)`; `None` otherwise.
        filter: Option<Box<Expr>>,
        /// The predicate (`all`, `exists`, `exists_one`, `filter`) or the transform (`map`).
        body: Box<Expr>,
    },
}

/// A comprehension macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Macro {
    /// `range.all(x, p)`: `p` holds for every element.
    All,
    /// `range.exists(x, p)`: `p` holds for some element.
    Exists,
    /// `range.exists_one(x, p)`: `p` holds for exactly one element.
    ExistsOne,
    /// `range.map(x, e)` or `range.map(x, p, e)`: the list of `e` for (filtered) elements.
    Map,
    /// `range.filter(x, p)`: the elements for which `p` holds.
    Filter,
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `!`
    Not,
    /// `-`
    Neg,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// A syntax error: what is wrong and where (0-based character offset into the source, and 1-based column).
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// 0-based offset, in characters (not bytes), into the source.
    pub offset: usize,
    /// 1-based column, in characters, within the line holding `offset`.
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a CEL expression.
pub fn parse(source: &str) -> Result<Expr, SyntaxError> {
    let mut lexer = Lexer { chars: source.chars().collect(), pos: 0 };
    let tok = lexer.next_token()?;
    let mut parser = Parser { lexer, tok, nesting: 0 };
    let (expr, _) = parser.expr()?;
    if parser.tok.tok != Tok::Eof {
        return Err(parser.unexpected());
    }
    Ok(expr)
}

/// Maximum nesting of sub-expressions (parentheses, brackets, arguments, conditionals).
const MAX_NESTING: usize = 100;
/// Maximum depth of a returned tree.
const MAX_DEPTH: usize = 250;
/// Words reserved for embedding: not allowed as identifiers or function names (fine as field names).
const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

fn make_error(chars: &[char], offset: usize, message: impl Into<String>) -> SyntaxError {
    let offset = offset.min(chars.len());
    let line_start = chars[..offset].iter().rposition(|&c| c == '\n').map_or(0, |i| i + 1);
    SyntaxError { message: message.into(), offset, column: offset - line_start + 1 }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Eof,
    Ident(String),
    /// An integer literal's magnitude; its range is checked by the parser, which knows the sign.
    Int(u64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    True,
    False,
    Null,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Dot,
    Comma,
    Colon,
    Question,
    OrOr,
    AndAnd,
    Not,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
}

impl Tok {
    fn describe(&self) -> String {
        let symbol = match self {
            Tok::Eof => return "end of input".into(),
            Tok::Ident(name) => return format!("identifier '{name}'"),
            Tok::Int(_) | Tok::Uint(_) => return "integer literal".into(),
            Tok::Double(_) => return "double literal".into(),
            Tok::Str(_) => return "string literal".into(),
            Tok::Bytes(_) => return "bytes literal".into(),
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::In => "in",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Dot => ".",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Question => "?",
            Tok::OrOr => "||",
            Tok::AndAnd => "&&",
            Tok::Not => "!",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
        };
        format!("'{symbol}'")
    }
}

struct Token {
    tok: Tok,
    offset: usize,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

fn push_char(buf: &mut Vec<u8>, c: char) {
    buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        make_error(&self.chars, offset, message)
    }

    fn skip_trivia(&mut self) {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(' ' | '\t' | '\n' | '\r' | '\u{c}'), _) => self.pos += 1,
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, SyntaxError> {
        self.skip_trivia();
        let start = self.pos;
        let Some(c) = self.peek(0) else { return Ok(Token { tok: Tok::Eof, offset: start }) };
        let (tok, len) = match (c, self.peek(1)) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            ('{', _) => (Tok::LBrace, 1),
            ('}', _) => (Tok::RBrace, 1),
            (',', _) => (Tok::Comma, 1),
            (':', _) => (Tok::Colon, 1),
            ('?', _) => (Tok::Question, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('%', _) => (Tok::Percent, 1),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('!', _) => (Tok::Not, 1),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('.', Some(d)) if d.is_ascii_digit() => return self.number(start),
            ('.', _) => (Tok::Dot, 1),
            (d, _) if d.is_ascii_digit() => return self.number(start),
            ('"' | '\'', _) => return self.string(start, false, false),
            (c, _) if c.is_ascii_alphabetic() || c == '_' => return self.word(start),
            ('=', _) => return Err(self.error(start, "unexpected character '=' (use '==' to compare)")),
            _ => return Err(self.error(start, format!("unexpected character {c:?}"))),
        };
        self.pos += len;
        Ok(Token { tok, offset: start })
    }

    fn skip_digits(&mut self) {
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// Lexes `DIGIT+`, `0x HEX+` (both with an optional `u` suffix) or a double literal.
    fn number(&mut self, start: usize) -> Result<Token, SyntaxError> {
        let radix_value = |digits: &[char], radix: u32| {
            digits
                .iter()
                .try_fold(0u64, |acc, c| acc.checked_mul(u64::from(radix))?.checked_add(u64::from(c.to_digit(radix)?)))
        };
        if self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X')) {
            self.pos += 2;
            let digits = self.pos;
            while self.peek(0).is_some_and(|c| c.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            if self.pos == digits {
                return Err(self.error(start, "hex literal needs at least one digit"));
            }
            let value = radix_value(&self.chars[digits..self.pos], 16);
            return self.int_suffix(start, value);
        }
        self.skip_digits();
        let int_end = self.pos;
        let mut double = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.skip_digits();
            double = true;
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.skip_digits();
                double = true;
            }
        }
        if double {
            let text: String = self.chars[start..self.pos].iter().collect();
            return match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Token { tok: Tok::Double(value), offset: start }),
                _ => Err(self.error(start, "double literal out of range")),
            };
        }
        let value = radix_value(&self.chars[start..int_end], 10);
        self.int_suffix(start, value)
    }

    fn int_suffix(&mut self, start: usize, value: Option<u64>) -> Result<Token, SyntaxError> {
        let unsigned = matches!(self.peek(0), Some('u' | 'U'));
        let Some(value) = value else {
            let what = if unsigned { "unsigned integer" } else { "integer" };
            return Err(self.error(start, format!("{what} literal out of range")));
        };
        if unsigned {
            self.pos += 1;
            return Ok(Token { tok: Tok::Uint(value), offset: start });
        }
        Ok(Token { tok: Tok::Int(value), offset: start })
    }

    /// Lexes an identifier, keyword, or a prefixed (`r`, `b`, `rb`, `br`, any case) string literal.
    fn word(&mut self, start: usize) -> Result<Token, SyntaxError> {
        let lower = |i: usize| self.peek(i).map(|c| c.to_ascii_lowercase());
        let quote_at = |i: usize| matches!(self.peek(i), Some('"' | '\''));
        let (c0, c1, q1, q2) = (lower(0), lower(1), quote_at(1), quote_at(2));
        match (c0, c1) {
            (Some('r'), _) if q1 => {
                self.pos += 1;
                return self.string(start, true, false);
            }
            (Some('b'), _) if q1 => {
                self.pos += 1;
                return self.string(start, false, true);
            }
            (Some('r'), Some('b')) | (Some('b'), Some('r')) if q2 => {
                self.pos += 2;
                return self.string(start, true, true);
            }
            _ => {}
        }
        while self.peek(0).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let tok = match text.as_str() {
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            "in" => Tok::In,
            _ => Tok::Ident(text),
        };
        Ok(Token { tok, offset: start })
    }

    /// Lexes a quoted literal; `self.pos` is at its opening quote, `start` at its prefix.
    fn string(&mut self, start: usize, raw: bool, bytes: bool) -> Result<Token, SyntaxError> {
        let quote = self.peek(0).unwrap_or('"');
        let triple = self.peek(1) == Some(quote) && self.peek(2) == Some(quote);
        let quote_len = if triple { 3 } else { 1 };
        self.pos += quote_len;
        let mut buf = Vec::new();
        loop {
            let Some(c) = self.peek(0) else { return Err(self.error(start, "unterminated string literal")) };
            if c == quote && (!triple || (self.peek(1) == Some(quote) && self.peek(2) == Some(quote))) {
                self.pos += quote_len;
                break;
            }
            if !triple && (c == '\n' || c == '\r') {
                return Err(self.error(start, "unterminated string literal"));
            }
            if c == '\\' && !raw {
                self.escape(start, bytes, &mut buf)?;
            } else {
                push_char(&mut buf, c);
                self.pos += 1;
            }
        }
        let tok = if bytes {
            Tok::Bytes(buf)
        } else {
            // Only whole characters were pushed, so this cannot fail.
            Tok::Str(String::from_utf8(buf).map_err(|_| self.error(start, "invalid string literal"))?)
        };
        Ok(Token { tok, offset: start })
    }

    /// Decodes the escape sequence at `self.pos` (a backslash) into `buf`.
    fn escape(&mut self, start: usize, bytes: bool, buf: &mut Vec<u8>) -> Result<(), SyntaxError> {
        let at = self.pos;
        let Some(c) = self.peek(1) else { return Err(self.error(start, "unterminated string literal")) };
        self.pos += 2;
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '?' | '"' | '\'' | '`' => Some(c),
            _ => None,
        };
        if let Some(ch) = simple {
            push_char(buf, ch);
            return Ok(());
        }
        let bad = |lexer: &Self| lexer.error(at, format!("invalid escape sequence '\\{}'", c.escape_debug()));
        // A byte value: a raw byte in bytes literals, the code point U+0000..U+00FF in strings.
        let byte = match c {
            'x' | 'X' => self.digits(2, 16).ok_or_else(|| bad(self))?,
            '0'..='3' => {
                self.pos -= 1;
                self.digits(3, 8).ok_or_else(|| bad(self))?
            }
            'u' | 'U' => {
                if bytes {
                    return Err(self.error(at, "unicode escapes are not allowed in bytes literals"));
                }
                let code = self.digits(if c == 'u' { 4 } else { 8 }, 16).ok_or_else(|| bad(self))?;
                let ch = char::from_u32(code)
                    .ok_or_else(|| self.error(at, format!("invalid unicode code point U+{code:X} in escape")))?;
                push_char(buf, ch);
                return Ok(());
            }
            _ => return Err(bad(self)),
        };
        let byte = u8::try_from(byte).map_err(|_| bad(self))?;
        if bytes {
            buf.push(byte);
        } else {
            push_char(buf, char::from(byte));
        }
        Ok(())
    }

    /// Reads exactly `n` digits of `radix`.
    fn digits(&mut self, n: usize, radix: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let digit = self.peek(0)?.to_digit(radix)?;
            value = value.checked_mul(radix)?.checked_add(digit)?;
            self.pos += 1;
        }
        Some(value)
    }
}

/// A parsed sub-expression and the depth of its tree.
type Node = (Expr, usize);

/// Call arguments, with each argument's offset and the deepest argument's depth.
#[derive(Default)]
struct Args {
    exprs: Vec<Expr>,
    offsets: Vec<usize>,
    depth: usize,
}

struct Parser {
    lexer: Lexer,
    /// The current (not yet consumed) token.
    tok: Token,
    nesting: usize,
}

/// The dotted name of `Ident` or a chain of `Select`s on one, for struct construction.
fn qualified_name(mut expr: &Expr) -> Option<String> {
    let mut parts = Vec::new();
    loop {
        match expr {
            Expr::Select(operand, field) => {
                parts.push(field.as_str());
                expr = operand;
            }
            Expr::Ident(name) => {
                parts.push(name.as_str());
                break;
            }
            _ => return None,
        }
    }
    parts.reverse();
    Some(parts.join("."))
}

fn boxed(node: Node) -> Box<Expr> {
    Box::new(node.0)
}

impl Parser {
    fn error(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        make_error(&self.lexer.chars, offset, message)
    }

    fn unexpected(&self) -> SyntaxError {
        let message = match self.tok.tok {
            Tok::Eof => "unexpected end of input".to_string(),
            ref tok => format!("unexpected {}", tok.describe()),
        };
        self.error(self.tok.offset, message)
    }

    /// Consumes the current token, returning it.
    fn advance(&mut self) -> Result<Token, SyntaxError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    /// Consumes the current token if it is `tok`.
    fn eat(&mut self, tok: &Tok) -> Result<bool, SyntaxError> {
        if self.tok.tok != *tok {
            return Ok(false);
        }
        self.advance()?;
        Ok(true)
    }

    fn expect(&mut self, tok: Tok) -> Result<(), SyntaxError> {
        if self.tok.tok != tok {
            let message = format!("expected {}, found {}", tok.describe(), self.tok.tok.describe());
            return Err(self.error(self.tok.offset, message));
        }
        self.advance()?;
        Ok(())
    }

    /// Consumes an identifier (reserved words allowed), returning it and its offset.
    fn name(&mut self, what: &str) -> Result<(String, usize), SyntaxError> {
        if !matches!(self.tok.tok, Tok::Ident(_)) {
            return Err(self.error(self.tok.offset, format!("expected {what}, found {}", self.tok.tok.describe())));
        }
        let token = self.advance()?;
        match token.tok {
            Tok::Ident(name) => Ok((name, token.offset)),
            _ => Err(self.error(token.offset, format!("expected {what}"))),
        }
    }

    fn check_reserved(&self, name: &str, offset: usize) -> Result<(), SyntaxError> {
        if RESERVED.contains(&name) {
            return Err(self.error(offset, format!("'{name}' is a reserved word")));
        }
        Ok(())
    }

    /// Wraps `expr` as a node one level above children of depth `child_depth`.
    fn node(&self, expr: Expr, child_depth: usize, offset: usize) -> Result<Node, SyntaxError> {
        if child_depth >= MAX_DEPTH {
            return Err(self.too_deep(offset));
        }
        Ok((expr, child_depth + 1))
    }

    #[cold]
    fn too_deep(&self, offset: usize) -> SyntaxError {
        self.error(offset, "expression nested too deeply")
    }

    // The functions below recurse (through `expr`) once per nesting level, so they are kept small and
    // delegate everything else: their frames bound how deep an expression can nest on a given stack.

    /// Expr = ConditionalOr ["?" ConditionalOr ":" Expr]
    fn expr(&mut self) -> Result<Node, SyntaxError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.too_deep(self.tok.offset));
        }
        // Not restored on error: the whole parse fails then.
        self.nesting += 1;
        let mut node = self.binary()?;
        if self.tok.tok == Tok::Question {
            node = self.conditional(node)?;
        }
        self.nesting -= 1;
        Ok(node)
    }

    /// The `? then : otherwise` after `cond`.
    fn conditional(&mut self, cond: Node) -> Result<Node, SyntaxError> {
        let at = self.advance()?.offset;
        let then = self.binary()?;
        self.expect(Tok::Colon)?;
        let otherwise = self.expr()?;
        let depth = cond.1.max(then.1).max(otherwise.1);
        self.node(Expr::Cond(boxed(cond), boxed(then), boxed(otherwise)), depth, at)
    }

    /// The binary levels ConditionalOr .. Multiplication: unary operands joined by left-associative operators,
    /// combined by operator precedence with explicit stacks (no recursion per operator).
    fn binary(&mut self) -> Result<Node, SyntaxError> {
        let mut operands = vec![self.unary()?];
        let mut operators: Vec<(BinaryOp, u8, usize)> = Vec::new();
        while let Some((op, precedence)) = binary_op(&self.tok.tok) {
            let at = self.advance()?.offset;
            while let Some(&(top, top_precedence, top_at)) = operators.last() {
                if top_precedence < precedence {
                    break;
                }
                operators.pop();
                self.reduce(&mut operands, top, top_at)?;
            }
            operators.push((op, precedence, at));
            operands.push(self.unary()?);
        }
        while let Some((op, _, at)) = operators.pop() {
            self.reduce(&mut operands, op, at)?;
        }
        match (operands.pop(), operands.is_empty()) {
            (Some(node), true) => Ok(node),
            _ => Err(self.error(self.tok.offset, "malformed binary expression")),
        }
    }

    /// Replaces the top two operands by `op` applied to them.
    fn reduce(&self, operands: &mut Vec<Node>, op: BinaryOp, at: usize) -> Result<(), SyntaxError> {
        let (Some(right), Some(left)) = (operands.pop(), operands.pop()) else {
            return Err(self.error(at, "malformed binary expression"));
        };
        let depth = left.1.max(right.1);
        operands.push(self.node(Expr::Binary(op, boxed(left), boxed(right)), depth, at)?);
        Ok(())
    }

    /// Unary = Member | "!" {"!"} Member | "-" {"-"} Member
    fn unary(&mut self) -> Result<Node, SyntaxError> {
        match self.tok.tok {
            Tok::Not | Tok::Minus => self.prefixed(),
            _ => self.member(None),
        }
    }

    /// A member after one or more `!` or `-`.
    fn prefixed(&mut self) -> Result<Node, SyntaxError> {
        let (op, symbol) = match self.tok.tok {
            Tok::Not => (UnaryOp::Not, Tok::Not),
            _ => (UnaryOp::Neg, Tok::Minus),
        };
        let mut offsets = Vec::new();
        while self.tok.tok == symbol {
            if offsets.len() >= MAX_DEPTH {
                return Err(self.too_deep(self.tok.offset));
            }
            offsets.push(self.advance()?.offset);
        }
        // The minus right before a numeric literal belongs to the literal.
        let negated = if op == UnaryOp::Neg && matches!(self.tok.tok, Tok::Int(_) | Tok::Double(_)) {
            offsets.pop()
        } else {
            None
        };
        let mut node = self.member(negated)?;
        while let Some(at) = offsets.pop() {
            let depth = node.1;
            node = self.node(Expr::Unary(op, boxed(node)), depth, at)?;
        }
        Ok(node)
    }

    /// Member = Primary {"." IDENT ["(" [ExprList] ")"] | "[" Expr "]" | "{" [FieldInits] [","] "}"}
    ///
    /// `negated` is the offset of a minus sign folded into the numeric literal that starts the member.
    fn member(&mut self, negated: Option<usize>) -> Result<Node, SyntaxError> {
        let mut node = match negated {
            Some(at) => self.negative_number(at)?,
            None => self.primary()?,
        };
        loop {
            node = match self.tok.tok {
                Tok::Dot => self.select(node)?,
                Tok::LBracket => self.index(node)?,
                Tok::LBrace if qualified_name(&node.0).is_some() => self.struct_body(node)?,
                _ => return Ok(node),
            };
        }
    }

    /// `operand.field` or `operand.method(args)`; the current token is the `.`.
    fn select(&mut self, operand: Node) -> Result<Node, SyntaxError> {
        self.advance()?;
        let (name, at) = self.name("a field or method name after '.'")?;
        if self.tok.tok != Tok::LParen {
            let depth = operand.1;
            return self.node(Expr::Select(boxed(operand), name), depth, at);
        }
        self.check_reserved(&name, at)?;
        let args = self.args()?;
        self.method(operand, name, args, at)
    }

    /// `operand[index]`; the current token is the `[`.
    fn index(&mut self, operand: Node) -> Result<Node, SyntaxError> {
        let at = self.advance()?.offset;
        let index = self.expr()?;
        self.expect(Tok::RBracket)?;
        let depth = operand.1.max(index.1);
        self.node(Expr::Index(boxed(operand), boxed(index)), depth, at)
    }

    /// `Name{field: value, ...}`, where `type_name` is the (qualified) identifier; the current token is the `{`.
    fn struct_body(&mut self, type_name: Node) -> Result<Node, SyntaxError> {
        let name = qualified_name(&type_name.0).unwrap_or_default();
        let at = self.advance()?.offset;
        let mut fields = Vec::new();
        let mut depth = 0;
        while self.tok.tok != Tok::RBrace {
            let (field, _) = self.name("a field name")?;
            self.expect(Tok::Colon)?;
            let (value, value_depth) = self.expr()?;
            fields.push((field, value));
            depth = depth.max(value_depth);
            if !self.eat(&Tok::Comma)? {
                break;
            }
        }
        self.expect(Tok::RBrace)?;
        self.node(Expr::Struct { name, fields }, depth, at)
    }

    /// `"(" [ExprList] ")"`
    fn args(&mut self) -> Result<Args, SyntaxError> {
        self.expect(Tok::LParen)?;
        let mut args = Args::default();
        if self.tok.tok != Tok::RParen {
            loop {
                args.offsets.push(self.tok.offset);
                let (expr, depth) = self.expr()?;
                args.exprs.push(expr);
                args.depth = args.depth.max(depth);
                if !self.eat(&Tok::Comma)? {
                    break;
                }
            }
        }
        self.expect(Tok::RParen)?;
        Ok(args)
    }

    /// Primary = ["."] IDENT ["(" [ExprList] ")"] | "(" Expr ")" | "[" [ExprList] [","] "]"
    ///         | "{" [MapInits] [","] "}" | LITERAL
    fn primary(&mut self) -> Result<Node, SyntaxError> {
        match self.tok.tok {
            Tok::Ident(_) | Tok::Dot => self.ident_or_call(),
            Tok::LParen => self.parenthesized(),
            Tok::LBracket => self.list(),
            Tok::LBrace => self.map(),
            _ => self.literal(),
        }
    }

    /// `(expr)`; the current token is the `(`.
    fn parenthesized(&mut self) -> Result<Node, SyntaxError> {
        self.advance()?;
        let inner = self.expr()?;
        self.expect(Tok::RParen)?;
        Ok(inner)
    }

    /// `[a, b, ...]`; the current token is the `[`.
    fn list(&mut self) -> Result<Node, SyntaxError> {
        let at = self.advance()?.offset;
        let mut items = Vec::new();
        let mut depth = 0;
        while self.tok.tok != Tok::RBracket {
            let (item, item_depth) = self.expr()?;
            items.push(item);
            depth = depth.max(item_depth);
            if !self.eat(&Tok::Comma)? {
                break;
            }
        }
        self.expect(Tok::RBracket)?;
        self.node(Expr::List(items), depth, at)
    }

    /// `{key: value, ...}`; the current token is the `{`.
    fn map(&mut self) -> Result<Node, SyntaxError> {
        let at = self.advance()?.offset;
        let mut entries = Vec::new();
        let mut depth = 0;
        while self.tok.tok != Tok::RBrace {
            let (key, key_depth) = self.expr()?;
            self.expect(Tok::Colon)?;
            let (value, value_depth) = self.expr()?;
            entries.push((key, value));
            depth = depth.max(key_depth).max(value_depth);
            if !self.eat(&Tok::Comma)? {
                break;
            }
        }
        self.expect(Tok::RBrace)?;
        self.node(Expr::Map(entries), depth, at)
    }

    /// `["."] IDENT`, or a global call `["."] IDENT(args)` (`has(x.f)` becomes [`Expr::Has`]).
    fn ident_or_call(&mut self) -> Result<Node, SyntaxError> {
        let at = self.tok.offset;
        let name = self.identifier()?;
        if self.tok.tok != Tok::LParen {
            return Ok((Expr::Ident(name), 1));
        }
        let args = self.args()?;
        self.global_call(name, args, at)
    }

    /// Consumes `["."] IDENT`, rejecting reserved words.
    fn identifier(&mut self) -> Result<String, SyntaxError> {
        let dot = self.eat(&Tok::Dot)?;
        let (name, at) = self.name(if dot { "an identifier after '.'" } else { "an identifier" })?;
        self.check_reserved(&name, at)?;
        Ok(if dot { format!(".{name}") } else { name })
    }

    /// `function(args)` with no target: a call, or the `has` macro.
    fn global_call(&self, function: String, args: Args, at: usize) -> Result<Node, SyntaxError> {
        if function == "has" && args.exprs.len() == 1 {
            let arg_at = args.offsets.first().copied().unwrap_or(at);
            return match args.exprs.into_iter().next() {
                Some(Expr::Select(operand, field)) => Ok((Expr::Has(operand, field), args.depth)),
                _ => Err(self.error(arg_at, "has() needs a field selection")),
            };
        }
        self.node(Expr::Call { target: None, function, args: args.exprs }, args.depth, at)
    }

    /// `target.function(args)`: a method call, or a comprehension macro.
    fn method(&self, target: Node, function: String, args: Args, at: usize) -> Result<Node, SyntaxError> {
        let depth = target.1.max(args.depth);
        let kind = match (function.as_str(), args.exprs.len()) {
            ("all", 2) => Macro::All,
            ("exists", 2) => Macro::Exists,
            ("exists_one", 2) => Macro::ExistsOne,
            ("filter", 2) => Macro::Filter,
            ("map", 2 | 3) => Macro::Map,
            _ => return self.node(Expr::Call { target: Some(boxed(target)), function, args: args.exprs }, depth, at),
        };
        let var_at = args.offsets.first().copied().unwrap_or(at);
        let mut exprs = args.exprs.into_iter();
        let var = match exprs.next() {
            Some(Expr::Ident(var)) if !var.starts_with('.') => var,
            _ => {
                return Err(self.error(var_at, format!("{function}() needs a simple identifier as its first argument")));
            }
        };
        let (filter, body) = match (exprs.next(), exprs.next()) {
            (Some(filter), Some(body)) => (Some(Box::new(filter)), body),
            (Some(body), None) => (None, body),
            _ => return Err(self.error(at, format!("{function}() needs a body"))),
        };
        let expr = Expr::Comprehension { kind, range: boxed(target), var, filter, body: Box::new(body) };
        self.node(expr, depth, at)
    }

    /// A literal, or a negative numeric literal after `!` (`!-1`; `!-x` is not in the grammar).
    fn literal(&mut self) -> Result<Node, SyntaxError> {
        let at = self.tok.offset;
        // The token is consumed right after, so its string or bytes can be taken.
        let expr = match &mut self.tok.tok {
            Tok::Int(value) => match i64::try_from(*value) {
                Ok(value) => Expr::Int(value),
                Err(_) => return Err(self.error(at, "integer literal out of range")),
            },
            Tok::Uint(value) => Expr::Uint(*value),
            Tok::Double(value) => Expr::Double(*value),
            Tok::Str(value) => Expr::Str(std::mem::take(value)),
            Tok::Bytes(value) => Expr::Bytes(std::mem::take(value)),
            Tok::True => Expr::Bool(true),
            Tok::False => Expr::Bool(false),
            Tok::Null => Expr::Null,
            Tok::Minus => {
                self.advance()?;
                if !matches!(self.tok.tok, Tok::Int(_) | Tok::Double(_)) {
                    return Err(self.error(at, "unexpected '-'"));
                }
                return self.negative_number(at);
            }
            _ => return Err(self.unexpected()),
        };
        self.advance()?;
        Ok((expr, 1))
    }

    /// A numeric literal preceded by a minus sign at `at`; the current token is the literal.
    fn negative_number(&mut self, at: usize) -> Result<Node, SyntaxError> {
        let expr = match self.tok.tok {
            Tok::Int(magnitude) => match 0i64.checked_sub_unsigned(magnitude) {
                Some(value) => Expr::Int(value),
                None => return Err(self.error(at, "integer literal out of range")),
            },
            Tok::Double(value) => Expr::Double(-value),
            _ => return Err(self.unexpected()),
        };
        self.advance()?;
        Ok((expr, 1))
    }
}

/// A binary operator token's operator and precedence (higher binds tighter).
fn binary_op(tok: &Tok) -> Option<(BinaryOp, u8)> {
    Some(match tok {
        Tok::OrOr => (BinaryOp::Or, 1),
        Tok::AndAnd => (BinaryOp::And, 2),
        Tok::EqEq => (BinaryOp::Eq, 3),
        Tok::NotEq => (BinaryOp::Ne, 3),
        Tok::Lt => (BinaryOp::Lt, 3),
        Tok::Le => (BinaryOp::Le, 3),
        Tok::Gt => (BinaryOp::Gt, 3),
        Tok::Ge => (BinaryOp::Ge, 3),
        Tok::In => (BinaryOp::In, 3),
        Tok::Plus => (BinaryOp::Add, 4),
        Tok::Minus => (BinaryOp::Sub, 4),
        Tok::Star => (BinaryOp::Mul, 5),
        Tok::Slash => (BinaryOp::Div, 5),
        Tok::Percent => (BinaryOp::Rem, 5),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(source: &str) -> Expr {
        parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"))
    }

    fn err(source: &str) -> SyntaxError {
        match parse(source) {
            Ok(expr) => panic!("{source:?} parsed as {expr:?}"),
            Err(e) => e,
        }
    }

    fn id(name: &str) -> Expr {
        Expr::Ident(name.into())
    }

    fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary(op, Box::new(left), Box::new(right))
    }

    fn un(op: UnaryOp, operand: Expr) -> Expr {
        Expr::Unary(op, Box::new(operand))
    }

    fn sel(operand: Expr, field: &str) -> Expr {
        Expr::Select(Box::new(operand), field.into())
    }

    fn call(target: Option<Expr>, function: &str, args: Vec<Expr>) -> Expr {
        Expr::Call { target: target.map(Box::new), function: function.into(), args }
    }

    fn s(value: &str) -> Expr {
        Expr::Str(value.into())
    }

    use BinaryOp::*;

    #[test]
    fn precedence() {
        assert_eq!(p("a || b && c"), bin(Or, id("a"), bin(And, id("b"), id("c"))));
        assert_eq!(p("a && b || c"), bin(Or, bin(And, id("a"), id("b")), id("c")));
        assert_eq!(p("!a == b"), bin(Eq, un(UnaryOp::Not, id("a")), id("b")));
        assert_eq!(p("a + b * c"), bin(Add, id("a"), bin(Mul, id("b"), id("c"))));
        assert_eq!(p("(a + b) * c"), bin(Mul, bin(Add, id("a"), id("b")), id("c")));
        assert_eq!(p("a + b < c"), bin(Lt, bin(Add, id("a"), id("b")), id("c")));
        assert_eq!(p("a < b == c"), bin(Eq, bin(Lt, id("a"), id("b")), id("c")));
        assert_eq!(p("a == b && c != d"), bin(And, bin(Eq, id("a"), id("b")), bin(Ne, id("c"), id("d"))));
        assert_eq!(p("a <= b || a >= c"), bin(Or, bin(Le, id("a"), id("b")), bin(Ge, id("a"), id("c"))));
        assert_eq!(p("-a.b"), un(UnaryOp::Neg, sel(id("a"), "b")));
        assert_eq!(p("!!a"), un(UnaryOp::Not, un(UnaryOp::Not, id("a"))));
        assert_eq!(
            p("a || b ? c : d"),
            Expr::Cond(Box::new(bin(Or, id("a"), id("b"))), Box::new(id("c")), Box::new(id("d")))
        );
    }

    #[test]
    fn left_associativity() {
        assert_eq!(p("a - b - c"), bin(Sub, bin(Sub, id("a"), id("b")), id("c")));
        assert_eq!(p("a / b % c * d"), bin(Mul, bin(Rem, bin(Div, id("a"), id("b")), id("c")), id("d")));
        assert_eq!(p("a || b || c"), bin(Or, bin(Or, id("a"), id("b")), id("c")));
        assert_eq!(p("1-1"), bin(Sub, Expr::Int(1), Expr::Int(1)));
        assert_eq!(p("a - -1"), bin(Sub, id("a"), Expr::Int(-1)));
        assert_eq!(p("a--1"), bin(Sub, id("a"), Expr::Int(-1)));
    }

    #[test]
    fn ternary_nesting() {
        let cond = |c, t, e| Expr::Cond(Box::new(c), Box::new(t), Box::new(e));
        assert_eq!(p("a ? b : c ? d : e"), cond(id("a"), id("b"), cond(id("c"), id("d"), id("e"))));
        assert_eq!(p("a ? (b ? c : d) : e"), cond(id("a"), cond(id("b"), id("c"), id("d")), id("e")));
        // The middle operand is a ConditionalOr in the grammar: a nested conditional needs parentheses.
        assert_eq!(err("a ? b ? c : d : e").offset, 6);
        assert_eq!(p("a ? b : (c ? d : e)"), p("a ? b : c ? d : e"));
    }

    #[test]
    fn int_literals() {
        assert_eq!(p("0"), Expr::Int(0));
        assert_eq!(p("123"), Expr::Int(123));
        assert_eq!(p("007"), Expr::Int(7));
        assert_eq!(p("0x1F"), Expr::Int(31));
        assert_eq!(p("0XfF"), Expr::Int(255));
        assert_eq!(p("-0x10"), Expr::Int(-16));
        assert_eq!(p("9223372036854775807"), Expr::Int(i64::MAX));
        assert_eq!(p("-9223372036854775808"), Expr::Int(i64::MIN));
        assert_eq!(p("- 5"), Expr::Int(-5));
        assert_eq!(p("--5"), un(UnaryOp::Neg, Expr::Int(-5)));
        assert_eq!(p("-(5)"), un(UnaryOp::Neg, Expr::Int(5)));
        assert_eq!(p("!-1"), un(UnaryOp::Not, Expr::Int(-1)));
        assert_eq!(p("-x"), un(UnaryOp::Neg, id("x")));
        assert_eq!(p("-1.foo()"), call(Some(Expr::Int(-1)), "foo", vec![]));
        assert_eq!(p("1.foo"), sel(Expr::Int(1), "foo"));
        for source in ["9223372036854775808", "-9223372036854775809", "99999999999999999999", "0x10000000000000000"] {
            let e = err(source);
            assert_eq!(e.message, "integer literal out of range", "{source}");
            assert_eq!(e.offset, 0, "{source}");
        }
        assert_eq!(err("1 + 9223372036854775808").offset, 4);
        assert_eq!(err("0x").message, "hex literal needs at least one digit");
    }

    #[test]
    fn uint_literals() {
        assert_eq!(p("1u"), Expr::Uint(1));
        assert_eq!(p("0U"), Expr::Uint(0));
        assert_eq!(p("0x10U"), Expr::Uint(16));
        assert_eq!(p("18446744073709551615u"), Expr::Uint(u64::MAX));
        assert_eq!(p("0xFFFFFFFFFFFFFFFFu"), Expr::Uint(u64::MAX));
        assert_eq!(p("-1u"), un(UnaryOp::Neg, Expr::Uint(1)));
        assert_eq!(err("18446744073709551616u").message, "unsigned integer literal out of range");
    }

    #[test]
    fn double_literals() {
        assert_eq!(p("1.5"), Expr::Double(1.5));
        assert_eq!(p("1e3"), Expr::Double(1000.0));
        assert_eq!(p("1E-2"), Expr::Double(0.01));
        assert_eq!(p("2.5e+3"), Expr::Double(2500.0));
        assert_eq!(p(".5"), Expr::Double(0.5));
        assert_eq!(p(".5e1"), Expr::Double(5.0));
        assert_eq!(p("-1.5"), Expr::Double(-1.5));
        assert_eq!(p("-.5"), Expr::Double(-0.5));
        assert_eq!(p("0.0"), Expr::Double(0.0));
        assert_eq!(p("[.5]"), Expr::List(vec![Expr::Double(0.5)]));
        assert_eq!(err("1e999").message, "double literal out of range");
        // `1.` is not a double; `1e` is `1` then an identifier.
        assert!(parse("1.").is_err());
        assert!(parse("1e").is_err());
        assert!(parse("1.5u").is_err());
    }

    #[test]
    fn string_literals() {
        assert_eq!(p("'abc'"), s("abc"));
        assert_eq!(p("\"abc\""), s("abc"));
        assert_eq!(p("''"), s(""));
        assert_eq!(p("\"it's\""), s("it's"));
        assert_eq!(p(r#"'\a\b\f\n\r\t\v\\\?\"\'\`'"#), s("\u{7}\u{8}\u{c}\n\r\t\u{b}\\?\"'`"));
        assert_eq!(p(r"'\x41\X42\101\u00e9\U0001F600\000'"), s("ABAé😀\0"));
        assert_eq!(p(r"'\xff'"), s("\u{ff}"));
        assert_eq!(p("'héllo ☃'"), s("héllo ☃"));
        assert_eq!(p("'''a'b''c'''"), s("a'b''c"));
        assert_eq!(p("\"\"\"x\ny\\n\"\"\""), s("x\ny\n"));
        assert_eq!(p("''''''"), s(""));
        assert_eq!(p(r"r'\n'"), s(r"\n"));
        assert_eq!(p(r#"R"a\""#), s(r"a\"));
        assert_eq!(p(r"r'''a\'b'''"), s(r"a\'b"));
        assert_eq!(p("'a' + 'b'"), bin(Add, s("a"), s("b")));
        assert_eq!(p("r + b"), bin(Add, id("r"), id("b")));
    }

    #[test]
    fn string_errors() {
        let e = err("'abc");
        assert_eq!((e.message.as_str(), e.offset), ("unterminated string literal", 0));
        assert_eq!(err("x + 'a\nb'").offset, 4);
        assert_eq!(err("'''abc''").offset, 0);
        let e = err(r#""a\qb""#);
        assert_eq!((e.message.as_str(), e.offset), (r"invalid escape sequence '\q'", 2));
        assert_eq!(err(r"'\x4'").offset, 1);
        assert_eq!(err(r"'\400'").offset, 1);
        assert_eq!(err(r"'\18'").offset, 1);
        assert_eq!(err(r"'\u12'").offset, 1);
        assert_eq!(err(r"'\uD800'").message, "invalid unicode code point U+D800 in escape");
        assert_eq!(err(r"'\U00110000'").offset, 1);
        assert_eq!(err(r"'\").message, "unterminated string literal");
        assert_eq!(err(r"r'abc").message, "unterminated string literal");
    }

    #[test]
    fn bytes_literals() {
        assert_eq!(p(r"b'\xff'"), Expr::Bytes(vec![0xff]));
        assert_eq!(p(r"B'\377\000'"), Expr::Bytes(vec![0xff, 0]));
        assert_eq!(p("b'é'"), Expr::Bytes(vec![0xc3, 0xa9]));
        assert_eq!(p("b\"abc\""), Expr::Bytes(b"abc".to_vec()));
        assert_eq!(p(r"b'\n\t'"), Expr::Bytes(b"\n\t".to_vec()));
        assert_eq!(p(r"br'\x'"), Expr::Bytes(br"\x".to_vec()));
        assert_eq!(p(r"Rb'\x'"), Expr::Bytes(br"\x".to_vec()));
        assert_eq!(p("b'''a\nb'''"), Expr::Bytes(b"a\nb".to_vec()));
        assert_eq!(err(r"b'\u00e9'").message, "unicode escapes are not allowed in bytes literals");
    }

    #[test]
    fn keywords_and_reserved_words() {
        assert_eq!(p("true"), Expr::Bool(true));
        assert_eq!(p("false"), Expr::Bool(false));
        assert_eq!(p("null"), Expr::Null);
        assert_eq!(p("_x1"), id("_x1"));
        assert_eq!(p("trueish"), id("trueish"));
        let e = err("if");
        assert_eq!((e.message.as_str(), e.offset), ("'if' is a reserved word", 0));
        assert_eq!(err("a + package").offset, 4);
        assert_eq!(err("x.while()").offset, 2);
        assert_eq!(err("let(1)").offset, 0);
        assert_eq!(err(".var").offset, 1);
        // Reserved words are fine as selectors and field names; keywords are not.
        assert_eq!(p("a.package"), sel(id("a"), "package"));
        assert_eq!(p("M{if: 1}"), Expr::Struct { name: "M".into(), fields: vec![("if".into(), Expr::Int(1))] });
        assert!(parse("a.true").is_err());
        assert!(parse("a.in").is_err());
        assert!(parse("M{null: 1}").is_err());
    }

    #[test]
    fn in_operator() {
        assert_eq!(p("a in [1, 2]"), bin(BinaryOp::In, id("a"), Expr::List(vec![Expr::Int(1), Expr::Int(2)])));
        assert_eq!(p("'k' in m && b"), bin(And, bin(BinaryOp::In, s("k"), id("m")), id("b")));
        assert_eq!(p("a + 1 in b"), bin(BinaryOp::In, bin(Add, id("a"), Expr::Int(1)), id("b")));
    }

    #[test]
    fn calls_selects_and_indexes() {
        assert_eq!(p("this.startsWith('a')"), call(Some(id("this")), "startsWith", vec![s("a")]));
        assert_eq!(p("size(this) > 0"), bin(Gt, call(None, "size", vec![id("this")]), Expr::Int(0)));
        assert_eq!(p("f()"), call(None, "f", vec![]));
        assert_eq!(
            p("a.b().c(1, 2)"),
            call(Some(call(Some(id("a")), "b", vec![])), "c", vec![Expr::Int(1), Expr::Int(2)])
        );
        assert_eq!(p("a.b.c"), sel(sel(id("a"), "b"), "c"));
        let index = |a, i| Expr::Index(Box::new(a), Box::new(i));
        assert_eq!(p("a[0]"), index(id("a"), Expr::Int(0)));
        assert_eq!(p("a['k'].b[1 + 2]"), index(sel(index(id("a"), s("k")), "b"), bin(Add, Expr::Int(1), Expr::Int(2))));
        assert_eq!(p("[1][0]"), index(Expr::List(vec![Expr::Int(1)]), Expr::Int(0)));
        assert_eq!(p("{'a': 1}['a']"), index(Expr::Map(vec![(s("a"), Expr::Int(1))]), s("a")));
        assert_eq!(p("'abc'.size()"), call(Some(s("abc")), "size", vec![]));
        assert_eq!(p("(a).b"), sel(id("a"), "b"));
        assert!(parse("f(1,)").is_err());
        assert!(parse("f(,)").is_err());
    }

    #[test]
    fn leading_dot_identifiers() {
        assert_eq!(p(".foo"), id(".foo"));
        assert_eq!(p(".foo.bar"), sel(id(".foo"), "bar"));
        assert_eq!(p(".f(1)"), call(None, ".f", vec![Expr::Int(1)]));
        assert_eq!(p(". foo"), id(".foo"));
        assert_eq!(p(".has(a.b)"), call(None, ".has", vec![sel(id("a"), "b")]));
        assert!(parse(".1foo").is_err());
        assert!(parse("..a").is_err());
    }

    #[test]
    fn lists_and_maps() {
        assert_eq!(p("[]"), Expr::List(vec![]));
        assert_eq!(p("[1, 2,]"), Expr::List(vec![Expr::Int(1), Expr::Int(2)]));
        assert_eq!(p("{}"), Expr::Map(vec![]));
        assert_eq!(
            p("{'a': 1, 2: [true],}"),
            Expr::Map(vec![(s("a"), Expr::Int(1)), (Expr::Int(2), Expr::List(vec![Expr::Bool(true)]))])
        );
        assert!(parse("[,]").is_err());
        assert!(parse("[1,,]").is_err());
        assert!(parse("{,}").is_err());
        assert!(parse("{'a'}").is_err());
        assert_eq!(err("[1 2]").message, "expected ']', found integer literal");
    }

    #[test]
    fn struct_construction() {
        assert_eq!(
            p("google.protobuf.Duration{seconds: 1}"),
            Expr::Struct { name: "google.protobuf.Duration".into(), fields: vec![("seconds".into(), Expr::Int(1))] }
        );
        assert_eq!(
            p(".pkg.M{a: 1, b: 'x',}.a"),
            sel(
                Expr::Struct { name: ".pkg.M".into(), fields: vec![("a".into(), Expr::Int(1)), ("b".into(), s("x"))] },
                "a"
            )
        );
        assert_eq!(p("M{}"), Expr::Struct { name: "M".into(), fields: vec![] });
        assert_eq!(
            p("M{m: N{}}"),
            Expr::Struct {
                name: "M".into(),
                fields: vec![("m".into(), Expr::Struct { name: "N".into(), fields: vec![] })]
            }
        );
        assert!(parse("f(){}").is_err());
        assert!(parse("a[0]{}").is_err());
        assert!(parse("M{}{}").is_err());
        assert!(parse("M{a 1}").is_err());
        assert!(parse("M{'a': 1}").is_err());
        assert!(parse("M{,}").is_err());
    }

    #[test]
    fn macros() {
        let comp = |kind, range, var: &str, filter: Option<Expr>, body| Expr::Comprehension {
            kind,
            range: Box::new(range),
            var: var.into(),
            filter: filter.map(Box::new),
            body: Box::new(body),
        };
        assert_eq!(p("has(this.x)"), Expr::Has(Box::new(id("this")), "x".into()));
        assert_eq!(p("has(a.b.c)"), Expr::Has(Box::new(sel(id("a"), "b")), "c".into()));
        let e = err("has(x)");
        assert_eq!((e.message.as_str(), e.offset), ("has() needs a field selection", 4));
        assert!(parse("has(a[0])").is_err());
        assert_eq!(p("has(a.b, c)"), call(None, "has", vec![sel(id("a"), "b"), id("c")]));
        assert_eq!(p("has()"), call(None, "has", vec![]));
        let gt0 = bin(Gt, id("x"), Expr::Int(0));
        assert_eq!(p("this.all(x, x > 0)"), comp(Macro::All, id("this"), "x", None, gt0.clone()));
        assert_eq!(p("this.exists(x, x > 0)"), comp(Macro::Exists, id("this"), "x", None, gt0.clone()));
        assert_eq!(p("this.exists_one(x, x > 0)"), comp(Macro::ExistsOne, id("this"), "x", None, gt0.clone()));
        assert_eq!(p("this.filter(x, x > 0)"), comp(Macro::Filter, id("this"), "x", None, gt0.clone()));
        let double = bin(Mul, id("x"), Expr::Int(2));
        assert_eq!(p("[1].map(x, x * 2)"), comp(Macro::Map, Expr::List(vec![Expr::Int(1)]), "x", None, double.clone()));
        assert_eq!(p("a.b.map(x, x > 0, x * 2)"), comp(Macro::Map, sel(id("a"), "b"), "x", Some(gt0.clone()), double));
        assert_eq!(
            p("m.all(k, m[k].all(v, v))"),
            comp(
                Macro::All,
                id("m"),
                "k",
                None,
                comp(Macro::All, Expr::Index(Box::new(id("m")), Box::new(id("k"))), "v", None, id("v"))
            )
        );
        assert_eq!(p("x.all()"), call(Some(id("x")), "all", vec![]));
        assert_eq!(p("x.exists(y)"), call(Some(id("x")), "exists", vec![id("y")]));
        assert_eq!(
            p("x.map(a, b, c, d)").clone(),
            call(Some(id("x")), "map", vec![id("a"), id("b"), id("c"), id("d")])
        );
        assert_eq!(p("all(x, y)"), call(None, "all", vec![id("x"), id("y")]));
        let e = err("x.all(1, 2)");
        assert_eq!((e.message.as_str(), e.offset), ("all() needs a simple identifier as its first argument", 6));
        assert_eq!(err("x.exists(.y, z)").offset, 9);
        assert_eq!(err("x.map(a.b, c)").offset, 6);
    }

    #[test]
    fn comments_and_whitespace() {
        assert_eq!(p("a // comment\n + b // more"), bin(Add, id("a"), id("b")));
        assert_eq!(p("\t a\r\n&&\u{c}b "), bin(And, id("a"), id("b")));
        assert_eq!(p("a / b"), bin(Div, id("a"), id("b")));
        assert!(parse("// only a comment").is_err());
    }

    #[test]
    fn error_positions() {
        let e = err("a +");
        assert_eq!((e.message.as_str(), e.offset, e.column), ("unexpected end of input", 3, 4));
        assert_eq!(e.to_string(), "column 4: unexpected end of input");
        assert_eq!(err("(a").message, "expected ')', found end of input");
        let e = err("a b");
        assert_eq!((e.message.as_str(), e.offset), ("unexpected identifier 'b'", 2));
        assert_eq!(err("a ? b").message, "expected ':', found end of input");
        assert_eq!(err("a = b").offset, 2);
        assert_eq!(err("a | b").message, "unexpected character '|'");
        assert_eq!(err("1 + #").offset, 4);
        assert_eq!(err("").message, "unexpected end of input");
        assert_eq!(err(")").message, "unexpected ')'");
        assert_eq!(err("a.").message, "expected a field or method name after '.', found end of input");
        assert_eq!(err("!-a").offset, 1);
        assert_eq!(err("-!a").offset, 1);
        // Offsets and columns count characters, and columns restart on each line.
        let e = err("'é' + \n  )");
        assert_eq!((e.offset, e.column), (9, 3));
        // The first error in source order wins, even if a later token does not lex.
        assert_eq!(err(") 'unterminated").message, "unexpected ')'");
    }

    #[test]
    fn nesting_limits() {
        let deep = format!("{}a{}", "(".repeat(90), ")".repeat(90));
        assert_eq!(p(&deep), id("a"));
        let deep = format!("{}1{}", "[".repeat(90), "]".repeat(90));
        assert!(parse(&deep).is_ok());
        let chain = vec!["a"; 200].join(" + ");
        assert!(parse(&chain).is_ok());
        for source in [
            "(".repeat(100_000),
            "[".repeat(100_000),
            "{".repeat(100_000),
            "f(".repeat(100_000),
            "a ? b : ".repeat(100_000),
            "!".repeat(100_000) + "a",
            "-".repeat(100_000) + "1",
            "a + ".repeat(100_000) + "a",
            "a.b".to_string() + &".c".repeat(100_000),
            "a".to_string() + &"[0]".repeat(100_000),
            "x".to_string() + &".f()".repeat(100_000),
            format!("{}a{}", "(".repeat(1000), ")".repeat(1000)),
            vec!["a + b"; 20_000].join(" + (") + &")".repeat(19_999),
        ] {
            assert_eq!(err(&source).message, "expression nested too deeply");
        }
    }

    /// A tiny deterministic pseudo-random generator (xorshift), for fuzzing without dependencies.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn garbled_inputs_do_not_panic() {
        let samples = [
            "this.all(x, x.startsWith('a') && size(x) <= 10u) ? -1.5e3 : .5",
            "has(this.f) || google.protobuf.Duration{seconds: -9223372036854775808, nanos: 0x1F}.seconds in [1, 2,]",
            r#"b'\xff\377' + r'''raw\''' + "\u00e9\U0001F600\n\a" + '''tri"ple''' + br"x""#,
            "{'a': [1, 2], 2: {}}['a'][0] % 3 / 4 * 5 - !!-1 != .pkg.f(a, b)[c] // comment\n",
            "m.map(k, k > 0, k * 2).filter(v, v).exists_one(z, z == null) >= false",
        ];
        let alphabet: Vec<char> = "()[]{}.,:?|&!=<>+-*/%'\"`\\rRbBuUxXeE0123456789_az \n\té☃".chars().collect();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut inputs: Vec<String> = Vec::new();
        for sample in samples {
            let chars: Vec<char> = sample.chars().collect();
            assert!(parse(sample).is_ok(), "{sample}");
            for end in 0..=chars.len() {
                inputs.push(chars[..end].iter().collect());
                inputs.push(chars[end..].iter().collect());
            }
            for _ in 0..300 {
                let mut garbled = chars.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(garbled.len() + 1);
                    match rng.below(3) {
                        0 if at < garbled.len() => {
                            garbled.remove(at);
                        }
                        1 if at < garbled.len() => garbled[at] = alphabet[rng.below(alphabet.len())],
                        _ => garbled.insert(at, alphabet[rng.below(alphabet.len())]),
                    }
                }
                inputs.push(garbled.into_iter().collect());
            }
        }
        for _ in 0..2000 {
            let len = rng.below(24);
            inputs.push((0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect());
        }
        for input in &inputs {
            if let Err(e) = parse(input) {
                let len = input.chars().count();
                assert!(e.offset <= len, "{input:?}: {e:?}");
                assert!(e.column >= 1 && e.column <= e.offset + 1, "{input:?}: {e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }
}
