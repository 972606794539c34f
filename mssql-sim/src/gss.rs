//! The GSSAPI acceptor behind integrated security (cargo feature `gssapi`): MIT krb5 through
//! the `libgssapi` crate, keys from the keytab `KRB5_KTNAME` names.

use crate::integrated::{Acceptor, Step};
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};

/// Accepts one security context with the default acceptor credential (any key in the
/// keytab; the caller checks the target against the instance's SPNs).
pub struct GssAcceptor {
    ctx: ServerCtx,
}

impl std::fmt::Debug for GssAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GssAcceptor")
    }
}

impl GssAcceptor {
    /// Acquires the acceptor credential; fails when no keytab is readable.
    pub fn new() -> Result<Self, String> {
        let cred = Cred::acquire(None, None, CredUsage::Accept, None).map_err(|e| {
            format!("no acceptor credential (is KRB5_KTNAME set to the service keytab?): {e}")
        })?;
        Ok(Self {
            ctx: ServerCtx::new(Some(cred)),
        })
    }
}

impl Acceptor for GssAcceptor {
    fn step(&mut self, token: &[u8]) -> Result<Step, String> {
        let out = self
            .ctx
            .step(token, None)
            .map_err(|e| format!("gss_accept_sec_context: {e}"))?
            .map(|b| b.to_vec());
        if !self.ctx.open().map_err(|e| e.to_string())? {
            return Ok(Step::Continue(out.unwrap_or_default()));
        }
        let principal = self
            .ctx
            .source_name()
            .map_err(|e| format!("no source name: {e}"))?
            .to_string();
        let target = self
            .ctx
            .target_name()
            .map_err(|e| format!("no target name: {e}"))?
            .to_string();
        Ok(Step::Done {
            principal,
            target,
            last: out,
        })
    }
}
