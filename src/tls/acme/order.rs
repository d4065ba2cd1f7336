//! One issuance: the account (stored, or made and stored), an order for
//! every name, each authorization answered with the configured challenge,
//! the CSR (a new key each time, made by rcgen), the chain fetched and
//! stored. Every wait on the CA is bounded by instant-acme's retry policy,
//! and the whole issuance by the caller's deadline.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::store::Stored;
use super::{Acme, AcmeError};
use crate::config::AcmeChallenge;

/// How long the CA is polled for a validation or a certificate.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

impl Acme {
    /// Gets a certificate for every configured name and stores it.
    pub(super) async fn issue(&self) -> Result<Stored, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let answered = self.answer_all(&mut order).await;
        let result = match answered {
            Ok(()) => self.finish(&mut order).await,
            Err(e) => Err(e),
        };
        // The answers are the order's alone, whatever its outcome.
        self.challenges.clear();
        result
    }

    /// Answers every pending authorization and tells the CA it may check.
    async fn answer_all(&self, order: &mut instant_acme::Order) -> Result<(), AcmeError> {
        let kind = match self.config.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Refused(format!("an authorization is {other:?}"))),
            }
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                AcmeError::Refused(format!("the CA offers no {kind:?} challenge"))
            })?;
            let name = challenge.identifier().to_string();
            let key_authorization = challenge.key_authorization();
            let set = match kind {
                ChallengeType::Http01 => self
                    .challenges
                    .set_http(&challenge.token, key_authorization.as_str()),
                _ => {
                    let cert = alpn_certificate(&name, key_authorization.digest().as_ref())?;
                    self.challenges.set_alpn(&name, Arc::new(cert))
                }
            };
            if !set {
                return Err(AcmeError::Refused("too many challenges at once".into()));
            }
            challenge.set_ready().await?;
        }
        Ok(())
    }

    /// Waits for the CA's checks, then finalizes and stores the chain.
    async fn finish(&self, order: &mut instant_acme::Order) -> Result<Stored, AcmeError> {
        match order.poll_ready(&POLL).await? {
            OrderStatus::Ready => {}
            other => {
                let why = order
                    .state()
                    .error
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| format!("the order is {other:?}"));
                return Err(AcmeError::Refused(why));
            }
        }
        let key_pem = order.finalize().await?;
        let chain = order.poll_certificate(&POLL).await?;
        self.files.save_certificate(&chain, &key_pem)
    }

    /// The account on the configured directory: the stored one, else a new
    /// one, stored before it is used.
    async fn account(&self) -> Result<Account, AcmeError> {
        let builder = || match &self.config.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let directory = &self.config.directory;
        if let Some(credentials) = self.files.account(directory)? {
            return Ok(builder()?.from_credentials(credentials).await?);
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await?;
        self.files.save_account(directory, credentials)?;
        tracing::info!(directory = %directory, "ACME account created");
        Ok(account)
    }
}

/// The self-signed certificate that answers TLS-ALPN-01 for `name`: the
/// name, and the SHA-256 of the key authorization in the critical
/// `acmeIdentifier` extension (RFC 8737).
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = crate::tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Refused(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}
