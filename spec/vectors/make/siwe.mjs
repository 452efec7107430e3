// Makes spec/vectors/siwe.json (PROTOCOL.md §1.1, 1.6) with implementations that are
// not denet's: viem's createSiweMessage writes each SIWE text from the bundle's
// fields as the spec names them, viem's account signs it (EIP-191), and two
// independent ERC-4361 parsers (@spruceid/siwe-parser's ABNF grammar and viem's
// parseSiweMessage) must read back every field. denet-core must then rebuild each
// text byte for byte (crates/core/tests/vectors.rs) and accept each signature.
//
//   node spec/vectors/make/siwe.mjs > spec/vectors/siwe.json
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createSiweMessage, parseSiweMessage } from "viem/siwe";
import { getAddress, recoverMessageAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const require = createRequire(import.meta.url);
const { ParsedMessage } = require("@spruceid/siwe-parser");

const STATEMENT =
  "Allow this device to read and send denet messages as this wallet until the expiration time. Sign only on a site you trust.";
const identity = JSON.parse(readFileSync(new URL("../identity.json", import.meta.url), "utf8"));
const b64 = (s) => Buffer.from(s, "base64url");

// The nonce of §1.1: the first 16 hex digits of sha256(sign_key ‖ dh_key).
const nonce = (b) => createHash("sha256").update(b64(b.sign_key)).update(b64(b.dh_key)).digest("hex").slice(0, 16);

const sites = [
  { domain: "chat.example.org", uri: "https://chat.example.org/", chain_id: 1, shift: 0 },
  { domain: "127.0.0.1:8787", uri: "http://127.0.0.1:8787", chain_id: 31337, shift: 123 },
];

const cases = [];
for (const [i, user] of identity.users.entries()) {
  const auth = { domain: sites[i % 2].domain, uri: sites[i % 2].uri, chain_id: sites[i % 2].chain_id };
  const b = user.bundle;
  const issued_at = b.issued_at + sites[i % 2].shift;
  const expires_at = b.expires_at + sites[i % 2].shift;
  // The fields of the SIWE text as PROTOCOL.md §1.1 names them.
  const fields = {
    domain: auth.domain,
    address: getAddress(b.wallet),
    statement: STATEMENT,
    uri: auth.uri,
    version: "1",
    chainId: auth.chain_id,
    nonce: nonce(b),
    issuedAt: new Date(issued_at),
    expirationTime: new Date(expires_at),
    resources: [`urn:denet:sign_key:${b.sign_key}`, `urn:denet:dh_key:${b.dh_key}`],
  };
  const text = createSiweMessage(fields);
  const account = privateKeyToAccount(user.wallet_private_key);
  const wallet_sig = await account.signMessage({ message: text });
  if ((await recoverMessageAddress({ message: text, signature: wallet_sig })) !== account.address) throw new Error("recover");

  // Both parsers read back what was written.
  const spruce = new ParsedMessage(text);
  const viemParsed = parseSiweMessage(text);
  const want = { ...fields, issuedAt: fields.issuedAt.toISOString(), expirationTime: fields.expirationTime.toISOString() };
  for (const [k, v] of Object.entries(want)) {
    const fromViem = viemParsed[k] instanceof Date ? viemParsed[k].toISOString() : viemParsed[k];
    if (JSON.stringify(spruce[k]) !== JSON.stringify(v)) throw new Error(`siwe-parser ${k}: ${spruce[k]} != ${v}`);
    if (JSON.stringify(fromViem) !== JSON.stringify(v)) throw new Error(`viem ${k}: ${fromViem} != ${v}`);
  }
  cases.push({
    name: user.name,
    bundle: { ...b, issued_at, expires_at, auth, wallet_sig },
    nonce: nonce(b),
    text,
  });
}

process.stdout.write(
  JSON.stringify(
    {
      description:
        "The SIWE (ERC-4361) form of a device authorization (PROTOCOL.md 1.1, version 1.6): each text written by viem's createSiweMessage from the bundle's fields and auth, signed by the wallet (EIP-191, viem), and read back to the same fields by @spruceid/siwe-parser 3.0.0 and viem's parseSiweMessage. Made by spec/vectors/make/siwe.mjs.",
      statement: STATEMENT,
      cases,
    },
    null,
    2,
  ) + "\n",
);
