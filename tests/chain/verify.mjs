// viem's verdict on a wallet signature, for the e2e tests to compare the relay's with:
// `verifyMessage` of a public client (ERC-1271 for deployed contract wallets, ERC-6492
// for undeployed ones, ecrecover for EOAs). Prints true or false.
//   DENET_MESSAGE=<text> node tests/chain/verify.mjs <rpc url> <address> <signature>
import { createPublicClient, http } from "viem";

const [rpc, address, signature] = process.argv.slice(2);
const client = createPublicClient({ transport: http(rpc) });
const ok = await client.verifyMessage({ address, message: process.env.DENET_MESSAGE, signature });
process.stdout.write(`${ok}\n`);
