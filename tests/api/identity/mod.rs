//! The OAuth2/OIDC provider, driven from outside: an independent relying party (the
//! `openidconnect` crate), a cookie-keeping browser, and hand-forged attacks.

pub(crate) mod support;

pub(crate) mod accounts;
mod bff;
mod flow;
mod rotation;
mod security;
mod sso;
