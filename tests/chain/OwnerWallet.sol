// SPDX-License-Identifier: MIT
// Test wallets for denet's e2e tests (PROTOCOL.md §1.1, 1.6): a minimal owner-based
// ERC-1271 smart-contract wallet, and a CREATE2 factory so a wallet can sign before it
// is deployed (ERC-6492). Compiled offline by solc-js (tests/chain/compile.mjs).
pragma solidity ^0.8.20;

contract OwnerWallet {
    address public owner;

    constructor(address initialOwner) {
        owner = initialOwner;
    }

    /// The owner hands the wallet to another key (after which old signatures fail).
    function setOwner(address newOwner) external {
        require(msg.sender == owner, "not the owner");
        owner = newOwner;
    }

    /// ERC-1271: valid when the owner signed `hash` (65 bytes r || s || v).
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return 0xffffffff;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        address signer = ecrecover(hash, v, r, s);
        return signer != address(0) && signer == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}

contract WalletFactory {
    function deploy(address owner, bytes32 salt) external returns (address) {
        return address(new OwnerWallet{salt: salt}(owner));
    }

    function addressOf(address owner, bytes32 salt) external view returns (address) {
        bytes32 code = keccak256(abi.encodePacked(type(OwnerWallet).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, code)))));
    }
}
