//! Parsing a T-SQL batch into the statements the simulator understands.
//!
//! Built on the `failover-tsql` tokenizer (bracket identifiers with `]]`, `N'…'` strings with
//! `''`, `--` and `/* */` comments, `;`). The grammar is the small subset the SQL backends
//! send (see the crate README); anything else is a syntax error 102/156 or, for a well-formed
//! statement of an unsupported kind, the error SQL Server would give for it.

use crate::service::{SqlMessage, Value};
use failover_tsql::lex::{self, Token};

/// A type name in `DECLARE` / `CAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeName {
    /// `int`, `smallint`, `tinyint`.
    Int,
    /// `bigint`.
    BigInt,
    /// `bit`.
    Bit,
    /// `nvarchar(n)`, `varchar(n)`, `sysname` (n in characters, `max` = 4000).
    NVarChar(u16),
}

/// A table name as written: up to `db.schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The parts, left to right.
    pub parts: Vec<String>,
}

impl TableName {
    /// The last part (the object name).
    pub fn object(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }
    /// The schema part, if given.
    pub fn schema(&self) -> Option<&str> {
        (self.parts.len() >= 2).then(|| self.parts[self.parts.len() - 2].as_str())
    }
    /// The database part, if given.
    pub fn database(&self) -> Option<&str> {
        (self.parts.len() >= 3).then(|| self.parts[self.parts.len() - 3].as_str())
    }
    /// The name as SQL Server prints it in error 208.
    pub fn display(&self) -> String {
        self.parts.join(".")
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A column, optionally qualified by a table alias.
    Col(Option<String>, String),
    /// A literal.
    Lit(Value),
    /// A local variable `@x`.
    Var(String),
    /// `@@VERSION`, `@@SPID`…
    Global(String),
    /// A built-in function call.
    Func(String, Vec<Expr>),
    /// `CAST(e AS t)`.
    Cast(Box<Expr>, TypeName),
    /// `*` or `alias.*` in a select list.
    Star(Option<String>),
}

/// A search condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// All must hold.
    And(Vec<Cond>),
    /// `a = b`.
    Eq(Expr, Expr),
    /// `a IN (…)`.
    In(Expr, Vec<Expr>),
    /// `a IS [NOT] NULL` (true: IS NULL).
    IsNull(Expr, bool),
}

/// A `FROM` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The table.
    pub table: TableName,
    /// Its alias (or the object name).
    pub alias: String,
}

/// A `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// Output expressions with optional aliases.
    pub items: Vec<(Expr, Option<String>)>,
    /// `FROM` and `LEFT JOIN … ON a = b` sources.
    pub from: Vec<Source>,
    /// Join condition of the second source.
    pub join_on: Option<(Expr, Expr)>,
    /// `WHERE`.
    pub filter: Option<Cond>,
    /// `ORDER BY` expressions (true: descending).
    pub order: Vec<(Expr, bool)>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// A `SELECT`.
    Select(Select),
    /// `USE db`.
    Use(String),
    /// `DECLARE @a t [= e], …`.
    Declare(Vec<(String, TypeName, Option<Expr>)>),
    /// `SET @a = e`.
    SetVar(String, Expr),
    /// A session `SET` option (accepted, no effect).
    SetOption,
    /// `SET LOCK_TIMEOUT n` (milliseconds; -1 waits for ever), kept for the session.
    SetLockTimeout(i64),
    /// `EXEC [@r =] proc args`.
    Exec {
        /// Variable receiving the return status.
        ret: Option<String>,
        /// Procedure name (last part).
        proc_name: String,
        /// Arguments: optional `@name`, value.
        args: Vec<(Option<String>, Expr)>,
    },
    /// `ALTER DATABASE db SET READ_ONLY|READ_WRITE [WITH …]`.
    AlterReadOnly {
        /// Database.
        db: String,
        /// READ_ONLY (true) or READ_WRITE.
        read_only: bool,
    },
    /// `ALTER DATABASE db SET PARTNER FAILOVER|FORCE_SERVICE_ALLOW_DATA_LOSS`.
    AlterPartner {
        /// Database.
        db: String,
        /// FORCE_SERVICE_ALLOW_DATA_LOSS.
        forced: bool,
    },
    /// `RESTORE DATABASE db WITH RECOVERY`.
    Restore(String),
    /// `IF OBJECT_ID(N'…', N'U') IS NULL CREATE TABLE t (…)`.
    CreateTableIfMissing {
        /// The name inside `OBJECT_ID`.
        checked: String,
        /// The table created.
        table: TableName,
    },
    /// `INSERT INTO t (cols) SELECT exprs [WHERE NOT EXISTS (…)]`.
    InsertSelect {
        /// Target.
        table: TableName,
        /// Column names.
        columns: Vec<String>,
        /// Values.
        values: Vec<Expr>,
    },
    /// `UPDATE t SET c = e, … WHERE cond`.
    Update {
        /// Target.
        table: TableName,
        /// Assignments.
        sets: Vec<(String, Expr)>,
        /// Condition.
        filter: Option<Cond>,
    },
}

/// Keywords that make a "near the keyword" error (156) rather than 102.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "IN",
    "IS",
    "NOT",
    "NULL",
    "AS",
    "ON",
    "JOIN",
    "LEFT",
    "ORDER",
    "BY",
    "SET",
    "ALTER",
    "DATABASE",
    "WITH",
    "RESTORE",
    "USE",
    "EXEC",
    "EXECUTE",
    "DECLARE",
    "INSERT",
    "INTO",
    "UPDATE",
    "DELETE",
    "DROP",
    "CREATE",
    "TABLE",
    "IF",
    "EXISTS",
    "VALUES",
    "BEGIN",
    "END",
    "GROUP",
    "UNION",
    "ROLLBACK",
    "CAST",
    "PROCEDURE",
    "PROC",
    "TRUNCATE",
    "GRANT",
    "KILL",
    "SHUTDOWN",
    "BACKUP",
    "WAITFOR",
    "WHILE",
    "RETURN",
];

fn is_keyword(w: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// SQL Server's syntax error for the token `t` (or the end of the batch).
pub fn syntax_error(t: Option<&Token>) -> SqlMessage {
    match t {
        Some(Token::Word(w)) if is_keyword(w) => SqlMessage::new(
            156,
            15,
            1,
            format!(
                "Incorrect syntax near the keyword '{}'.",
                w.to_ascii_lowercase()
            ),
        ),
        Some(t) => SqlMessage::new(102, 15, 1, format!("Incorrect syntax near '{}'.", show(t))),
        None => SqlMessage::new(
            102,
            15,
            1,
            "Incorrect syntax near the end of the batch.".to_string(),
        ),
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Word(w) | Token::Number(w) | Token::Punct(w) => w.clone(),
        Token::Ident(s) => s.clone(),
        Token::NString(s) | Token::String(s) => s.clone(),
        Token::Semicolon => ";".into(),
        Token::Comment(_) => String::new(),
    }
}

struct P {
    t: Vec<Token>,
    i: usize,
}

type R<T> = Result<T, SqlMessage>;

impl P {
    fn peek(&self) -> Option<&Token> {
        self.t.get(self.i)
    }
    fn peek_at(&self, k: usize) -> Option<&Token> {
        self.t.get(self.i + k)
    }
    fn err<T>(&self) -> R<T> {
        match (self.peek(), self.t.last()) {
            (Some(t), _) => Err(syntax_error(Some(t))),
            // At the end of the batch SQL Server names the last token, always as 102.
            (None, Some(last)) => Err(SqlMessage::new(
                102,
                15,
                1,
                format!("Incorrect syntax near '{}'.", show(last)),
            )),
            (None, None) => Err(syntax_error(None)),
        }
    }
    fn is(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(kw))
    }
    fn eat(&mut self, kw: &str) -> bool {
        if self.is(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn want(&mut self, kw: &str) -> R<()> {
        if self.eat(kw) { Ok(()) } else { self.err() }
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Token::Punct(x)) if x == p)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn want_punct(&mut self, p: &str) -> R<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err()
        }
    }
    /// A non-keyword bare word or a delimited identifier.
    fn ident(&mut self) -> R<String> {
        match self.peek() {
            Some(Token::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            Some(Token::Word(w)) if !is_keyword(w) && !w.starts_with('@') => {
                let s = w.clone();
                self.i += 1;
                Ok(s)
            }
            _ => self.err(),
        }
    }
    fn var(&mut self) -> R<String> {
        match self.peek() {
            Some(Token::Word(w)) if w.starts_with('@') && !w.starts_with("@@") => {
                let s = w.to_ascii_lowercase();
                self.i += 1;
                Ok(s)
            }
            _ => self.err(),
        }
    }
    fn at_end_of_stmt(&self) -> bool {
        matches!(self.peek(), None | Some(Token::Semicolon))
    }

    fn table_name(&mut self) -> R<TableName> {
        let mut parts = vec![self.ident()?];
        while self.eat_punct(".") {
            parts.push(self.ident()?);
        }
        if parts.len() > 4 {
            return self.err();
        }
        Ok(TableName { parts })
    }

    fn type_name(&mut self) -> R<TypeName> {
        let w = self.ident()?.to_ascii_lowercase();
        let sized = |p: &mut P| -> R<u16> {
            if p.eat_punct("(") {
                let n = match p.peek() {
                    Some(Token::Number(n)) => n.parse::<u16>().unwrap_or(4000).min(4000),
                    Some(t) if t.is_word("max") => 4000,
                    _ => return p.err(),
                };
                p.i += 1;
                p.want_punct(")")?;
                Ok(n.max(1))
            } else {
                Ok(30)
            }
        };
        Ok(match w.as_str() {
            "int" | "smallint" | "tinyint" => TypeName::Int,
            "bigint" => TypeName::BigInt,
            "bit" => TypeName::Bit,
            "sysname" => TypeName::NVarChar(128),
            "nvarchar" | "varchar" | "nchar" | "char" => TypeName::NVarChar(sized(self)?),
            _ => {
                return Err(SqlMessage::new(
                    2715,
                    16,
                    6,
                    format!("Column, parameter, or variable #1: Cannot find data type {w}."),
                ));
            }
        })
    }

    fn expr(&mut self) -> R<Expr> {
        let neg = self.eat_punct("-");
        let e = match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.i += 1;
                let v: i64 = n
                    .parse()
                    .map_err(|_| syntax_error(Some(&Token::Number(n.clone()))))?;
                Expr::Lit(Value::Int(if neg { -v } else { v }))
            }
            _ if neg => return self.err(),
            Some(Token::NString(s)) | Some(Token::String(s)) => {
                self.i += 1;
                Expr::Lit(Value::Str(s))
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NULL") => {
                self.i += 1;
                Expr::Lit(Value::Null)
            }
            Some(Token::Word(w)) if w.starts_with("@@") => {
                self.i += 1;
                Expr::Global(w[2..].to_ascii_uppercase())
            }
            Some(Token::Word(w)) if w.starts_with('@') => Expr::Var(self.var()?),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("CAST") => {
                self.i += 1;
                self.want_punct("(")?;
                let e = self.expr()?;
                self.want("AS")?;
                let t = self.type_name()?;
                self.want_punct(")")?;
                Expr::Cast(Box::new(e), t)
            }
            Some(Token::Word(_)) | Some(Token::Ident(_)) => {
                let first = self.ident()?;
                if self.eat_punct(".") {
                    let col = self.ident()?;
                    Expr::Col(Some(first.to_lowercase()), col.to_lowercase())
                } else if self.is_punct("(") {
                    self.i += 1;
                    let mut args = Vec::new();
                    if !self.eat_punct(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.eat_punct(")") {
                                break;
                            }
                            self.want_punct(",")?;
                        }
                    }
                    Expr::Func(first.to_ascii_uppercase(), args)
                } else {
                    Expr::Col(None, first.to_lowercase())
                }
            }
            _ => return self.err(),
        };
        Ok(e)
    }

    fn cond(&mut self) -> R<Cond> {
        let mut all = vec![self.pred()?];
        while self.eat("AND") {
            all.push(self.pred()?);
        }
        if self.is("OR") {
            return self.err();
        }
        Ok(if all.len() == 1 {
            all.pop().expect("one")
        } else {
            Cond::And(all)
        })
    }

    fn pred(&mut self) -> R<Cond> {
        let a = self.expr()?;
        if self.eat_punct("=") {
            return Ok(Cond::Eq(a, self.expr()?));
        }
        if self.eat("IN") {
            self.want_punct("(")?;
            let mut list = vec![self.expr()?];
            while self.eat_punct(",") {
                list.push(self.expr()?);
            }
            self.want_punct(")")?;
            return Ok(Cond::In(a, list));
        }
        if self.eat("IS") {
            let not = self.eat("NOT");
            self.want("NULL")?;
            return Ok(Cond::IsNull(a, !not));
        }
        self.err()
    }

    fn alias(&mut self) -> R<Option<String>> {
        if self.eat("AS") {
            return Ok(Some(self.ident()?));
        }
        match self.peek() {
            Some(Token::Ident(_)) => Ok(Some(self.ident()?)),
            Some(Token::Word(w)) if !is_keyword(w) && !w.starts_with('@') => {
                Ok(Some(self.ident()?))
            }
            _ => Ok(None),
        }
    }

    fn select(&mut self) -> R<Select> {
        let mut items = Vec::new();
        loop {
            if self.eat_punct("*") {
                items.push((Expr::Star(None), None));
                if !self.eat_punct(",") {
                    break;
                }
                continue;
            }
            if matches!(self.peek_at(1), Some(Token::Punct(p)) if p == ".")
                && matches!(self.peek_at(2), Some(Token::Punct(p)) if p == "*")
            {
                let q = self.ident()?.to_lowercase();
                self.i += 2;
                items.push((Expr::Star(Some(q)), None));
                if !self.eat_punct(",") {
                    break;
                }
                continue;
            }
            let e = self.expr()?;
            let a = self.alias()?;
            items.push((e, a));
            if !self.eat_punct(",") {
                break;
            }
        }
        let mut from = Vec::new();
        let mut join_on = None;
        if self.eat("FROM") {
            let table = self.table_name()?;
            let alias = self
                .alias()?
                .unwrap_or_else(|| table.object().to_string())
                .to_lowercase();
            from.push(Source { table, alias });
            if self.eat("WITH") {
                // Table hints: (UPDLOCK, HOLDLOCK)
                self.want_punct("(")?;
                while !self.eat_punct(")") {
                    if self.peek().is_none() {
                        return self.err();
                    }
                    self.i += 1;
                }
            }
            if self.eat("LEFT") {
                self.eat("OUTER");
                self.want("JOIN")?;
                let table = self.table_name()?;
                let alias = self
                    .alias()?
                    .unwrap_or_else(|| table.object().to_string())
                    .to_lowercase();
                from.push(Source { table, alias });
                self.want("ON")?;
                let a = self.expr()?;
                self.want_punct("=")?;
                let b = self.expr()?;
                join_on = Some((a, b));
            }
        }
        let filter = if self.eat("WHERE") {
            Some(self.cond()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat("ORDER") {
            self.want("BY")?;
            loop {
                let e = self.expr()?;
                let desc = if self.eat("DESC") {
                    true
                } else {
                    self.eat("ASC");
                    false
                };
                order.push((e, desc));
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        Ok(Select {
            items,
            from,
            join_on,
            filter,
            order,
        })
    }

    fn statement(&mut self) -> R<Stmt> {
        let Some(first) = self.peek().cloned() else {
            return self.err();
        };
        let Token::Word(w) = &first else {
            return self.err();
        };
        self.i += 1;
        match w.to_ascii_uppercase().as_str() {
            "SELECT" => Ok(Stmt::Select(self.select()?)),
            "USE" => Ok(Stmt::Use(self.ident()?)),
            "DECLARE" => {
                let mut vars = Vec::new();
                loop {
                    let v = self.var()?;
                    self.eat("AS");
                    let t = self.type_name()?;
                    let init = if self.eat_punct("=") {
                        Some(self.expr()?)
                    } else {
                        None
                    };
                    vars.push((v, t, init));
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                Ok(Stmt::Declare(vars))
            }
            "SET" => {
                if let Some(Token::Word(v)) = self.peek()
                    && v.starts_with('@')
                {
                    let v = self.var()?;
                    self.want_punct("=")?;
                    return Ok(Stmt::SetVar(v, self.expr()?));
                }
                self.set_option()
            }
            "EXEC" | "EXECUTE" => {
                let ret = if matches!(self.peek(), Some(Token::Word(v)) if v.starts_with('@')) {
                    let v = self.var()?;
                    self.want_punct("=")?;
                    Some(v)
                } else {
                    None
                };
                let name = self.table_name()?;
                let mut args = Vec::new();
                if !self.at_end_of_stmt() {
                    loop {
                        let named = if matches!(self.peek(), Some(Token::Word(v)) if v.starts_with('@'))
                            && matches!(self.peek_at(1), Some(Token::Punct(p)) if p == "=")
                        {
                            let v = self.var()?;
                            self.i += 1;
                            Some(v)
                        } else {
                            None
                        };
                        args.push((named, self.expr()?));
                        if !self.eat_punct(",") {
                            break;
                        }
                    }
                }
                Ok(Stmt::Exec {
                    ret,
                    proc_name: name.object().to_string(),
                    args,
                })
            }
            "ALTER" => {
                self.want("DATABASE")?;
                let db = self.ident()?;
                self.want("SET")?;
                if self.eat("PARTNER") {
                    let forced = if self.eat("FAILOVER") {
                        false
                    } else if self.eat("FORCE_SERVICE_ALLOW_DATA_LOSS") {
                        true
                    } else {
                        return self.err();
                    };
                    return Ok(Stmt::AlterPartner { db, forced });
                }
                let read_only = if self.eat("READ_ONLY") {
                    true
                } else if self.eat("READ_WRITE") {
                    false
                } else {
                    return self.err();
                };
                if self.eat("WITH") {
                    if self.eat("NO_WAIT") {
                    } else {
                        self.want("ROLLBACK")?;
                        if self.eat("AFTER") {
                            match self.peek() {
                                Some(Token::Number(_)) => self.i += 1,
                                _ => return self.err(),
                            }
                            self.eat("SECONDS");
                        } else {
                            self.want("IMMEDIATE")?;
                        }
                    }
                }
                Ok(Stmt::AlterReadOnly { db, read_only })
            }
            "RESTORE" => {
                self.want("DATABASE")?;
                let db = self.ident()?;
                self.want("WITH")?;
                self.want("RECOVERY")?;
                Ok(Stmt::Restore(db))
            }
            "IF" => {
                // IF OBJECT_ID(N'…', N'U') IS NULL CREATE TABLE t (…)
                match self.expr()? {
                    Expr::Func(f, args) if f == "OBJECT_ID" && !args.is_empty() => {
                        let Expr::Lit(Value::Str(checked)) = &args[0] else {
                            return self.err();
                        };
                        let checked = checked.clone();
                        self.want("IS")?;
                        self.want("NULL")?;
                        self.want("CREATE")?;
                        self.want("TABLE")?;
                        let table = self.table_name()?;
                        self.balanced()?;
                        Ok(Stmt::CreateTableIfMissing { checked, table })
                    }
                    _ => self.err(),
                }
            }
            "INSERT" => {
                self.eat("INTO");
                let table = self.table_name()?;
                self.want_punct("(")?;
                let mut columns = vec![self.ident()?.to_lowercase()];
                while self.eat_punct(",") {
                    columns.push(self.ident()?.to_lowercase());
                }
                self.want_punct(")")?;
                self.want("SELECT")?;
                let mut values = vec![self.expr()?];
                while self.eat_punct(",") {
                    values.push(self.expr()?);
                }
                if self.eat("WHERE") {
                    self.want("NOT")?;
                    self.want("EXISTS")?;
                    self.balanced()?;
                }
                if values.len() != columns.len() {
                    return Err(SqlMessage::new(
                        120,
                        15,
                        1,
                        "The select list for the INSERT statement contains fewer items than the insert list. The number of SELECT values must match the number of INSERT columns.",
                    ));
                }
                Ok(Stmt::InsertSelect {
                    table,
                    columns,
                    values,
                })
            }
            "UPDATE" => {
                let table = self.table_name()?;
                self.want("SET")?;
                let mut sets = Vec::new();
                loop {
                    let c = self.ident()?.to_lowercase();
                    self.want_punct("=")?;
                    sets.push((c, self.expr()?));
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                let filter = if self.eat("WHERE") {
                    Some(self.cond()?)
                } else {
                    None
                };
                Ok(Stmt::Update {
                    table,
                    sets,
                    filter,
                })
            }
            _ => {
                self.i -= 1;
                self.err()
            }
        }
    }

    /// Skips a balanced parenthesised group.
    fn balanced(&mut self) -> R<()> {
        self.want_punct("(")?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return self.err(),
                Some(Token::Punct(p)) if p == "(" => depth += 1,
                Some(Token::Punct(p)) if p == ")" => depth -= 1,
                _ => {}
            }
            self.i += 1;
        }
        Ok(())
    }

    fn set_option(&mut self) -> R<Stmt> {
        const ON_OFF: &[&str] = &[
            "NOCOUNT",
            "ANSI_NULLS",
            "ANSI_WARNINGS",
            "ANSI_PADDING",
            "ANSI_NULL_DFLT_ON",
            "ANSI_NULL_DFLT_OFF",
            "QUOTED_IDENTIFIER",
            "XACT_ABORT",
            "IMPLICIT_TRANSACTIONS",
            "CONCAT_NULL_YIELDS_NULL",
            "ARITHABORT",
            "ARITHIGNORE",
            "CURSOR_CLOSE_ON_COMMIT",
            "NUMERIC_ROUNDABORT",
            "ANSI_DEFAULTS",
            "FMTONLY",
            "NOEXEC",
            "PARSEONLY",
            "SHOWPLAN_ALL",
            "STATISTICS",
            "FORCEPLAN",
        ];
        let Some(Token::Word(opt)) = self.peek().cloned() else {
            return self.err();
        };
        let upper = opt.to_ascii_uppercase();
        self.i += 1;
        if ON_OFF.contains(&upper.as_str()) {
            if upper == "STATISTICS" {
                self.ident()?;
            }
            if self.eat("ON") || self.eat("OFF") {
                return Ok(Stmt::SetOption);
            }
            return self.err();
        }
        match upper.as_str() {
            // https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql
            "LOCK_TIMEOUT" => {
                let neg = self.eat_punct("-");
                match self.peek() {
                    Some(Token::Number(n)) => {
                        let v: i64 = n.parse().map_err(|_| syntax_error(self.peek()))?;
                        self.i += 1;
                        Ok(Stmt::SetLockTimeout(if neg { -v } else { v }))
                    }
                    _ => self.err(),
                }
            }
            "TEXTSIZE" | "ROWCOUNT" | "DEADLOCK_PRIORITY" | "DATEFIRST" => {
                self.eat_punct("-");
                match self.peek() {
                    Some(Token::Number(_)) | Some(Token::Word(_)) => {
                        self.i += 1;
                        Ok(Stmt::SetOption)
                    }
                    _ => self.err(),
                }
            }
            "LANGUAGE" | "DATEFORMAT" => {
                match self.peek() {
                    Some(Token::Word(_))
                    | Some(Token::Ident(_))
                    | Some(Token::String(_))
                    | Some(Token::NString(_)) => self.i += 1,
                    _ => return self.err(),
                }
                Ok(Stmt::SetOption)
            }
            "TRANSACTION" => {
                self.want("ISOLATION")?;
                self.want("LEVEL")?;
                while matches!(self.peek(), Some(Token::Word(w)) if ["READ", "COMMITTED", "UNCOMMITTED", "REPEATABLE", "SERIALIZABLE", "SNAPSHOT"].iter().any(|k| k.eq_ignore_ascii_case(w)))
                {
                    self.i += 1;
                }
                Ok(Stmt::SetOption)
            }
            _ => Err(SqlMessage::new(
                195,
                15,
                1,
                format!("'{opt}' is not a recognized SET option."),
            )),
        }
    }
}

/// Parses a whole batch. Like SQL Server, a syntax error anywhere means nothing runs.
pub fn parse_batch(sql: &str) -> Result<Vec<Stmt>, SqlMessage> {
    let tokens: Vec<Token> = lex::tokenize(sql)
        .map_err(|e| {
            SqlMessage::new(
                105,
                15,
                1,
                format!("Unclosed quotation mark or comment: {e}."),
            )
        })?
        .into_iter()
        .filter(|t| !matches!(t, Token::Comment(_)))
        .collect();
    let mut p = P { t: tokens, i: 0 };
    let mut out = Vec::new();
    loop {
        while matches!(p.peek(), Some(Token::Semicolon)) {
            p.i += 1;
        }
        if p.peek().is_none() {
            return Ok(out);
        }
        out.push(p.statement()?);
        // A statement ends at `;`, at the end, or where the next statement's keyword starts.
        match p.peek() {
            None | Some(Token::Semicolon) => {}
            Some(Token::Word(w))
                if [
                    "SELECT", "USE", "DECLARE", "SET", "EXEC", "EXECUTE", "ALTER", "RESTORE", "IF",
                    "INSERT", "UPDATE",
                ]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(w)) => {}
            _ => return p.err(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_core::{DatabaseName, MirrorFailoverKind};
    use failover_tsql::build;

    fn dbs() -> Vec<DatabaseName> {
        vec![
            DatabaseName::parse("xds").unwrap(),
            DatabaseName::parse("we]ird'; DROP --").unwrap(),
        ]
    }

    #[test]
    fn every_builder_batch_parses() {
        let cfg = failover_tsql::SqlConfig::default();
        for sql in [
            build::probe(&dbs()),
            build::positions(&cfg, &dbs()),
            build::set_read_only(&dbs(), true, 5000),
            build::set_read_only(&dbs(), false, 5000),
            build::recover(&dbs()),
            build::mirror_failover(&dbs(), MirrorFailoverKind::Planned),
            build::mirror_failover(&dbs(), MirrorFailoverKind::Forced),
            build::acquire_lock("cms'lock"),
            build::release_lock("cms'lock"),
            build::lock_mode("cms'lock"),
            build::read_location(&cfg),
        ] {
            parse_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let stmts = parse_batch(&build::set_read_only(&dbs(), true, 5000)).unwrap();
        assert_eq!(stmts[0], Stmt::Use("master".into()));
        assert_eq!(stmts[1], Stmt::SetLockTimeout(5000));
        assert_eq!(
            parse_batch("SET LOCK_TIMEOUT -1").unwrap(),
            vec![Stmt::SetLockTimeout(-1)]
        );
        assert_eq!(
            stmts[3],
            Stmt::AlterReadOnly {
                db: "we]ird'; DROP --".into(),
                read_only: true
            }
        );
    }

    #[test]
    fn syntax_errors_have_sql_server_numbers() {
        assert_eq!(parse_batch("SELEC 1").unwrap_err().number, 102);
        assert_eq!(parse_batch("SELECT FROM x").unwrap_err().number, 156);
        assert_eq!(
            parse_batch("ALTER DATABASE [x] SET READ_ONLY WITH ROLLBACK")
                .unwrap_err()
                .number,
            102
        );
        assert_eq!(parse_batch("SET FOO ON").unwrap_err().number, 195);
        assert_eq!(parse_batch("SELECT 'abc").unwrap_err().number, 105);
        assert!(
            parse_batch("SET NOCOUNT ON; SET TEXTSIZE 2147483647 SELECT 1 -- c\n/* x */;").is_ok()
        );
    }
}
