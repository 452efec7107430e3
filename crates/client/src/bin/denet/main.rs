//! `denet`: end-to-end encrypted chat between wallets, from the command line.
//!
//! Every command takes `--home DIR` (default `~/.denet`), `--relay URL` (default
//! `http://127.0.0.1:8787`) and `--json` (one JSON object per line, for scripts).

mod chat;
mod state;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(name = "denet", version, about = "End-to-end encrypted chat between wallets")]
struct Cli {
    /// State directory (identity, room keys, read cursors)
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Relay base URL
    #[arg(long, global = true, default_value = "http://127.0.0.1:8787")]
    relay: String,
    /// Print one JSON object per line instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create (or import with --wallet-key) a wallet key and this device's keys
    Init {
        /// The wallet's secp256k1 key as hex (visible to other users of this machine: prefer --wallet-key-file)
        #[arg(long, conflicts_with = "wallet_key_file")]
        wallet_key: Option<String>,
        /// Read the wallet key from FILE (`-` for standard input)
        #[arg(long, value_name = "FILE")]
        wallet_key_file: Option<PathBuf>,
        /// Sign in as this owner-based contract wallet (ERC-1271), owned by the wallet key
        #[arg(long, value_name = "ADDRESS", requires = "chain_id")]
        contract_wallet: Option<String>,
        /// The contract wallet's chain (the SIWE Chain ID)
        #[arg(long, requires = "contract_wallet")]
        chain_id: Option<u64>,
    },
    /// Publish this device's key bundle to the relay
    Register,
    /// Revoke this device's key
    Revoke,
    /// Send a direct message
    Send {
        wallet: String,
        text: String,
        /// The relay and the recipient do not learn who sent it
        #[arg(long)]
        anonymous: bool,
    },
    /// Read new direct messages (invites and rekeys are applied)
    Inbox {
        /// Show everything, not only what is new
        #[arg(long)]
        all: bool,
    },
    /// Group chat
    #[command(subcommand)]
    Room(RoomCommand),
    /// A recovery device and an encrypted key backup: history on a new device
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Stay connected and print messages as they arrive (the inbox, or a room)
    Listen {
        room: Option<String>,
        /// Exit after this many messages
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Create a room; prints its id
    Create {
        #[arg(long, default_value = "")]
        name: String,
        /// The room password (visible to other users of this machine: prefer --password-file)
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        /// Read the room password from FILE (`-` for standard input)
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Invite a wallet (the room key travels end to end, never the password)
    Invite { room: String, wallet: String },
    /// Join a room you were invited to
    Join {
        room: String,
        /// The wallet whose invite to take, when several invited you to this room
        #[arg(long, value_name = "WALLET")]
        from: Option<String>,
        /// The room password; a wrong one is refused (`wrong_password`) and the invite kept
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        /// Read the room password from FILE (`-` for standard input)
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Send a message to a room
    Send { room: String, text: String },
    /// Read new messages of a room
    Read {
        room: String,
        #[arg(long)]
        all: bool,
    },
    /// Leave a room (a remaining member then rotates the key)
    Leave { room: String },
    /// The rooms you know
    List,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Set up the backup (again: new keys and a new recovery code); prints the recovery code once
    Setup,
    /// Show the backup the relay holds and what this device knows of it
    Status,
    /// Restore the backup on this device (registers it first), by the wallet or a recovery code
    Restore {
        /// Read the recovery code from FILE (`-` for standard input); without it the wallet unlocks
        #[arg(long, value_name = "FILE")]
        recovery_code_file: Option<PathBuf>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let home = cli
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".denet"));
    let out = chat::Out { json: cli.json };
    let result = match cli.command {
        Command::Init { wallet_key, wallet_key_file, contract_wallet, chain_id } => {
            let contract = contract_wallet.zip(chain_id).map(|(wallet, chain_id)| chat::Contract { wallet, chain_id });
            secret(wallet_key, wallet_key_file)
                .and_then(|key| chat::init(&home, key.as_deref().map(|k| k.as_str()), contract, &out))
        }
        command => match chat::Ctx::open(home, &cli.relay, out) {
            Ok(mut ctx) => run(&mut ctx, command).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        if cli.json {
            // The client's own codes (the §6 ones come in the message).
            let known = |c: &&str| *c == "wrong_password" || denet_client::backup::CODES.contains(c);
            let code = e.split_once(':').map(|(c, _)| c).filter(known);
            println!("{}", serde_json::json!({"error": e, "code": code}));
        } else {
            eprintln!("denet: {e}");
        }
        std::process::exit(1);
    }
}

/// A secret given on the command line, or read from a file (`-`: standard input)
/// without its trailing newline. Wiped from memory when dropped.
fn secret(given: Option<String>, file: Option<PathBuf>) -> Result<Option<Zeroizing<String>>, String> {
    use std::io::Read;
    let Some(path) = file else { return Ok(given.map(Zeroizing::new)) };
    let mut text = Zeroizing::new(String::new());
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    Ok(Some(text))
}

async fn run(ctx: &mut chat::Ctx, command: Command) -> Result<(), String> {
    let backup = matches!(command, Command::Backup(_) | Command::Revoke);
    run_command(ctx, command).await?;
    // A room key learned or made by the command goes into the backup this device keeps.
    if !backup {
        ctx.sync_backup().await;
    }
    Ok(())
}

async fn run_command(ctx: &mut chat::Ctx, command: Command) -> Result<(), String> {
    match command {
        Command::Init { .. } => unreachable!("handled before opening the state"),
        Command::Register => ctx.register().await,
        Command::Revoke => ctx.revoke().await,
        Command::Send { wallet, text, anonymous } => ctx.send(&wallet, &text, anonymous).await,
        Command::Inbox { all } => ctx.inbox(all).await,
        Command::Listen { room, count } => ctx.listen(room.as_deref(), count).await,
        Command::Backup(cmd) => match cmd {
            BackupCommand::Setup => ctx.backup_setup().await,
            BackupCommand::Status => ctx.backup_status().await,
            BackupCommand::Restore { recovery_code_file } => {
                let code = secret(None, recovery_code_file)?;
                ctx.backup_restore(code.as_deref().map(|c| c.as_str())).await
            }
        },
        Command::Room(cmd) => match cmd {
            RoomCommand::Create { name, password, password_file } => {
                let password = secret(password, password_file)?;
                ctx.room_create(&name, password.as_deref().map(|p| p.as_str())).await
            }
            RoomCommand::Invite { room, wallet } => ctx.room_invite(&room, &wallet).await,
            RoomCommand::Join { room, from, password, password_file } => {
                let password = secret(password, password_file)?;
                ctx.room_join(&room, from.as_deref(), password.as_deref().map(|p| p.as_str())).await
            }
            RoomCommand::Send { room, text } => ctx.room_send(&room, &text).await,
            RoomCommand::Read { room, all } => ctx.room_read(&room, all).await,
            RoomCommand::Leave { room } => ctx.room_leave(&room).await,
            RoomCommand::List => ctx.room_list(),
        },
    }
}
