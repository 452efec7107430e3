//! What a wallet signature proves (PROTOCOL.md §1.1, 1.6): an EOA's is checked here,
//! by recovery; a contract wallet's (ERC-1271, or ERC-6492 for one not deployed yet)
//! needs one `eth_call` on its chain, which the caller makes (the core does no I/O).

use crate::wallet::Wallet;

/// The verdict of a wallet signature that the core could reach alone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Proof {
    /// The signature recovers to the wallet: an externally owned account.
    Eoa,
    /// It does not: only the wallet's contract, on `chain_id`, can say.
    Contract(ContractCheck),
}

/// A contract wallet's signature to check on its chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContractCheck {
    pub wallet: Wallet,
    pub chain_id: u64,
    /// The EIP-191 hash of the signed text.
    pub hash: [u8; 32],
    pub signature: Vec<u8>,
}
