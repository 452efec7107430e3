// Contract wallets in the SDK (PROTOCOL.md §1.1, 1.6), against a real relay and a local
// anvil chain: an owner-based ERC-1271 wallet (tests/chain/OwnerWallet.sol, compiled by
// solc-js, deployed by viem) signs in through the SDK and chats both ways with an EOA
// user; each SDK checks the other's devices on the chain itself (through `rpc`, or the
// wallet's own EIP-1193 provider), and one that cannot check seals nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { createPublicClient, createWalletClient, encodeFunctionData, http, parseAbi, serializeErc6492Signature } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { readFileSync } from "node:fs";
import init, * as w from "../dist/wasm/denet_wasm.js";
import { Client, DenetError } from "../dist/index.js";
import { freePort, root, startRelay, viemSigner } from "./relay.mjs";

await init({ module_or_path: readFileSync(join(root, "sdk/dist/wasm/denet_wasm_bg.wasm")) });

const CHAIN = 31337;
let relay, anvil, rpc, factory;
const chain = { id: CHAIN, name: "anvil", nativeCurrency: { name: "E", symbol: "E", decimals: 18 }, rpcUrls: { default: { http: [] } } };
const abi = parseAbi(["function deploy(address owner, bytes32 salt) returns (address)", "function addressOf(address owner, bytes32 salt) view returns (address)"]);

before(async () => {
  const port = await freePort();
  anvil = spawn(join(root, "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    ["--host", "127.0.0.1", "--port", String(port), "--chain-id", String(CHAIN), "--accounts", "1", "--silent"], { stdio: "ignore", detached: true });
  rpc = `http://127.0.0.1:${port}`;
  chain.rpcUrls.default.http = [rpc];
  const pub = createPublicClient({ chain, transport: http(rpc) });
  for (let i = 0; ; i++) {
    try {
      await pub.getChainId();
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const compiled = JSON.parse(spawnSync(process.execPath, [join(root, "tests/chain/compile.mjs")], { encoding: "utf8" }).stdout);
  const [funder] = await pub.request({ method: "eth_accounts" });
  const wallet = createWalletClient({ chain, transport: http(rpc), account: funder });
  const hash = await wallet.sendTransaction({ data: compiled.WalletFactory.bytecode });
  factory = (await pub.waitForTransactionReceipt({ hash })).contractAddress;
  relay = await startRelay({ CONTRACT_WALLET_CHAINS: String(CHAIN), ETH_RPC_URLS: `${CHAIN}=${rpc}` });
});
after(async () => {
  await relay?.stop();
  try {
    process.kill(-anvil.pid, "SIGTERM");
  } catch {}
});

/** A deployed OwnerWallet of a fresh owner key, and a Signer that signs for it as its owner. */
async function contractSigner(salt) {
  const owner = privateKeyToAccount(generatePrivateKey());
  const pub = createPublicClient({ chain, transport: http(rpc) });
  const [funder] = await pub.request({ method: "eth_accounts" });
  const wallet = createWalletClient({ chain, transport: http(rpc), account: funder });
  const hash = await wallet.sendTransaction({ to: factory, data: encodeFunctionData({ abi, functionName: "deploy", args: [owner.address, salt] }) });
  await pub.waitForTransactionReceipt({ hash });
  const address = await pub.readContract({ address: factory, abi, functionName: "addressOf", args: [owner.address, salt] });
  return { address, getAddress: async () => address, signMessage: (message) => owner.signMessage({ message }), getChainId: async () => CHAIN };
}

/** An OwnerWallet not deployed yet: its Signer wraps the owner's signature for ERC-6492 (viem) with the factory call. */
async function undeployedSigner(salt) {
  const owner = privateKeyToAccount(generatePrivateKey());
  const pub = createPublicClient({ chain, transport: http(rpc) });
  const address = await pub.readContract({ address: factory, abi, functionName: "addressOf", args: [owner.address, salt] });
  const data = encodeFunctionData({ abi, functionName: "deploy", args: [owner.address, salt] });
  const signMessage = async (message) => serializeErc6492Signature({ address: factory, data, signature: await owner.signMessage({ message }) });
  return { address, owner, getAddress: async () => address, signMessage, getChainId: async () => CHAIN, code: () => pub.getCode({ address }) };
}

const texts = (ms) => ms.filter((m) => m.type === "text").map((m) => m.text);
const salt = (n) => `0x${n.toString(16).padStart(64, "0")}`;

test("a contract wallet (ERC-1271) signs in through the SDK and chats both ways with an EOA", async () => {
  const signer = await contractSigner(salt(1));
  const smart = await Client.create({ relay: relay.base, signer, storage: "memory", rpc: { [CHAIN]: rpc } });
  await smart.register();
  const listed = await (await fetch(`${relay.base}/v1/keys/${smart.wallet}`)).json();
  assert.equal(listed.keys[0].auth.chain_id, CHAIN);
  const eoa = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory", rpc: { [CHAIN]: rpc } });
  await eoa.register();
  await eoa.send(smart.wallet, "hello contract wallet");
  assert.deepEqual(texts(await smart.inbox()), ["hello contract wallet"]);
  await smart.send(eoa.wallet, "hello from the contract wallet");
  const got = (await eoa.inbox()).filter((m) => m.type === "text" && !m.to);
  assert.deepEqual(got.map((m) => [m.from, m.text]), [[smart.wallet, "hello from the contract wallet"]]);
});

test("the wallet's own EIP-1193 provider checks a contract wallet when it is on that chain", async () => {
  const signer = await contractSigner(salt(2));
  const smart = await Client.create({ relay: relay.base, signer, storage: "memory", rpc: { [CHAIN]: rpc } });
  await smart.register();
  // An EOA whose wallet (EIP-1193) is on the chain, no rpc option: the provider answers eth_call.
  const base = viemSigner();
  const provider = (chainId) => ({
    request: async ({ method, params }) => {
      if (method === "eth_chainId") return `0x${chainId.toString(16)}`;
      const resp = await fetch(rpc, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
      const answer = await resp.json();
      if (answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
      return answer.result;
    },
  });
  const { fromEip1193 } = await import("../dist/index.js");
  const onChain = { ...base, chainRequest: fromEip1193(provider(CHAIN), "0x0000000000000000000000000000000000000001").chainRequest };
  const eoa = await Client.create({ relay: relay.base, signer: onChain, storage: "memory" });
  await eoa.register();
  await eoa.send(smart.wallet, "checked through the wallet");
  assert.deepEqual(texts(await smart.inbox()), ["checked through the wallet"]);
  // On another chain the provider cannot say: unverified, nothing sealed.
  const elsewhere = { ...viemSigner(), chainRequest: fromEip1193(provider(1), "0x0000000000000000000000000000000000000001").chainRequest };
  const other = await Client.create({ relay: relay.base, signer: elsewhere, storage: "memory" });
  await other.register();
  await assert.rejects(other.send(smart.wallet, "to whom?"), (e) => e instanceof DenetError && e.code === "unverified" && /31337/.test(e.message));
});

test("attack: an SDK that cannot check a contract wallet seals nothing to it and does not believe its messages", async () => {
  const signer = await contractSigner(salt(3));
  const smart = await Client.create({ relay: relay.base, signer, storage: "memory", rpc: { [CHAIN]: rpc } });
  await smart.register();
  const eoa = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory" });
  await eoa.register();
  await assert.rejects(eoa.send(smart.wallet, "to whom?"), (e) => e instanceof DenetError && e.code === "unverified");
  await smart.send(eoa.wallet, "believe me");
  const got = await eoa.inbox();
  assert.deepEqual(texts(got), []);
  assert.ok(got.some((m) => m.type === "unreadable" && /^unverified/.test(m.error)), JSON.stringify(got));
});

test("an undeployed contract wallet (ERC-6492) signs in through the SDK and chats both ways with an EOA", async () => {
  const signer = await undeployedSigner(salt(4));
  const smart = await Client.create({ relay: relay.base, signer, storage: "memory", rpc: { [CHAIN]: rpc } });
  await smart.register();
  assert.equal(await signer.code(), undefined, "still not deployed: the checks were eth_calls");
  const eoa = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory", rpc: { [CHAIN]: rpc } });
  await eoa.register();
  await eoa.send(smart.wallet, "hello counterfactual wallet");
  assert.deepEqual(texts(await smart.inbox()), ["hello counterfactual wallet"]);
  await smart.send(eoa.wallet, "hello before my deployment");
  const got = (await eoa.inbox()).filter((m) => m.type === "text" && !m.to);
  assert.deepEqual(got.map((m) => [m.from, m.text]), [[smart.wallet, "hello before my deployment"]]);
});

test("attack: a relay that lists a checked contract wallet's signature with its own dh_key gets nothing sealed to it", async () => {
  const signer = await contractSigner(salt(5));
  const smart = await Client.create({ relay: relay.base, signer, storage: "memory", rpc: { [CHAIN]: rpc } });
  await smart.register();
  const eoa = await Client.create({ relay: relay.base, signer: viemSigner(), storage: "memory", rpc: { [CHAIN]: rpc } });
  await eoa.register();
  await eoa.send(smart.wallet, "to the real device"); // its signature checked on the chain: valid
  // From now on the relay lists the same sign_key and wallet_sig with a dh_key of its own,
  // and keeps what the client posts.
  const attacker = new w.Device();
  const posted = [];
  const real = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    if (String(url).endsWith("/v1/messages") && init?.method === "POST") posted.push(JSON.parse(init.body));
    const resp = await real(url, init);
    if (!String(url).includes(`/v1/keys/${smart.wallet}`) || !resp.ok) return resp;
    const answer = await resp.json();
    answer.keys = answer.keys.map((k) => ({ ...k, dh_key: attacker.dhKey }));
    return new Response(JSON.stringify(answer), { status: 200, headers: resp.headers });
  };
  try {
    await new Promise((r) => setTimeout(r, 10_500)); // the key list is fetched again after 10 s
    await eoa.send(smart.wallet, "for the real device only");
  } finally {
    globalThis.fetch = real;
  }
  const dm = posted.find((e) => e.to === smart.wallet);
  const eoaDh = (await (await fetch(`${relay.base}/v1/keys/${eoa.wallet}`)).json()).keys[0].dh_key;
  assert.throws(() => attacker.openDm(Buffer.from(dm.body, "base64url"), smart.wallet, eoa.wallet, eoaDh), "not sealed to the relay's key");
  assert.deepEqual(texts(await smart.inbox()), ["to the real device", "for the real device only"]);
});
