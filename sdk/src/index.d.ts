// Types of the denet SDK (sdk/src/index.js). Stable API: see sdk/README.md.

/** EIP-191 personal_sign of a UTF-8 message; returns 0x + 130 hex. */
export type Signer = {
  getAddress(): Promise<string>;
  signMessage(message: string): Promise<string>;
};

/** The subset of EIP-1193 the SDK uses. */
export interface EIP1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<any>;
}

export function fromEip1193(provider: EIP1193Provider, address?: string): Signer;

/** Where a client keeps its record per wallet (its device secrets and session state). */
export interface Store {
  load(key: string): Promise<unknown | null>;
  save(key: string, value: unknown): Promise<void>;
}

export type Message = {
  /** Computed here from the envelope (§2), never taken from the relay. */
  id: string;
  seq: number;
  /** The inbox wallet or the room id it was read from. */
  address: string;
  /** The sender's wallet, null when anonymous. */
  from: string | null;
  /** The §8.1 content type: text, invite, rekey, join, leave, room_deleted, room_key; "unreadable" with `error`. */
  type: string;
  text?: string;
  room?: string;
  /** Our own direct message, read back from another of our devices' copy: to whom it went. */
  to?: string;
  /** With `to`: the id of the message the recipient got. */
  original?: string;
  /** With type "room_key": the room's name (another device of ours holds the room). */
  name?: string;
  sentAt: number;
  receivedAt: number;
  /** Why the message could not be read (bad signature, no key for its epoch, …). */
  error?: string;
};

/** An Error whose `code` is the relay's §6 code or a client-side one (wrong_password, offline, open, invalid). */
export class DenetError extends Error {
  code: string;
  status?: number;
}

export class Client {
  static create(opts: { relay: string; signer: Signer; storage?: "indexeddb" | "memory" | Store }): Promise<Client>;
  /** Lowercase. */
  readonly wallet: string;
  /** Authorizes this device: one signMessage, skipped if the relay lists it active (new keys if it was revoked). */
  register(): Promise<void>;
  /** Whether the relay lists this device active (nothing to sign). */
  isRegistered(): Promise<boolean>;
  /** The text `register` asks the wallet to sign. */
  authorizationText(): string;
  send(to: string, text: string, opts?: { anonymous?: boolean }): Promise<{ id: string; seq: number }>;
  createRoom(opts?: { name?: string; password?: string }): Promise<string>;
  invite(room: string, wallet: string): Promise<void>;
  /** `from`: whose invite to take, when several wallets invited you to the room. */
  joinRoom(room: string, opts?: { password?: string; from?: string }): Promise<void>;
  sendRoom(room: string, text: string): Promise<{ id: string; seq: number }>;
  leaveRoom(room: string): Promise<void>;
  rooms(): Promise<Array<{ room: string; name: string; epoch: number; members: string[] }>>;
  /** Invites recorded from the inbox, not joined yet: one per room and inviter. */
  invites(): Array<{ room: string; name: string; from: string; password: boolean }>;
  /** New since last read, or all. */
  inbox(opts?: { all?: boolean }): Promise<Message[]>;
  readRoom(room: string, opts?: { all?: boolean }): Promise<Message[]>;
  stream(h: {
    onMessage(m: Message): void;
    onConnectionChange?(s: "connecting" | "live" | "offline"): void;
    /** A message that could not be taken (e.g. the relay's key lists unreachable); the stream goes on. */
    onError?(e: DenetError): void;
  }): () => void;
}
