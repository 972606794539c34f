//! Reading FreeTDS `tsql` output, for tests that check the simulator (or a real server)
//! through an independent client.

/// A result set as `tsql` prints it: its header line, then its rows, each split on tabs,
/// `NULL` as `None`.
pub type TsqlSet = Vec<Vec<Option<String>>>;

/// The result sets `tsql` printed on stdout, found by their `(N rows affected)` trailer
/// (line prompts such as `1> 2> ` are stripped).
pub fn tsql_sets(out: &str) -> Vec<TsqlSet> {
    let strip = |l: &str| -> String {
        let mut s = l;
        loop {
            let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && s[digits..].starts_with("> ") {
                s = &s[digits + 2..];
            } else {
                return s.to_string();
            }
        }
    };
    let lines: Vec<String> = out.lines().map(strip).collect();
    let mut sets = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if let Some(n) = t
            .strip_prefix('(')
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            && t.ends_with("affected)")
            && i > n
        {
            let rows = lines[i - n - 1..i]
                .iter()
                .map(|r| {
                    r.split('\t')
                        .map(|v| (v != "NULL").then(|| v.to_string()))
                        .collect()
                })
                .collect();
            sets.push(rows);
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_with_headers_prompts_and_nulls() {
        let out = "locale is \"C\"\n1> 2> name\tis_read_only\nlis\t0\nxds\tNULL\n(2 rows affected)\n1> result\n0\n(1 row affected)\n";
        assert_eq!(
            tsql_sets(out),
            vec![
                vec![
                    vec![Some("name".into()), Some("is_read_only".into())],
                    vec![Some("lis".into()), Some("0".into())],
                    vec![Some("xds".into()), None],
                ],
                vec![vec![Some("result".into())], vec![Some("0".into())]],
            ]
        );
    }
}
