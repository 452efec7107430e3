// Compiles tests/chain/OwnerWallet.sol with solc-js (npm `solc`, no download) and
// prints {"OwnerWallet": {"bytecode": "0x…"}, "WalletFactory": {…}} for the e2e harness.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const solc = createRequire(import.meta.url)("solc");
const source = readFileSync(new URL("./OwnerWallet.sol", import.meta.url), "utf8");
const input = {
  language: "Solidity",
  sources: { "OwnerWallet.sol": { content: source } },
  settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "paris", outputSelection: { "*": { "*": ["evm.bytecode.object"] } } },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const contracts = output.contracts["OwnerWallet.sol"];
const out = {};
for (const name of ["OwnerWallet", "WalletFactory"]) out[name] = { bytecode: "0x" + contracts[name].evm.bytecode.object };
process.stdout.write(JSON.stringify(out) + "\n");
