//! `denet`: end-to-end encrypted chat between wallets, from the command line.
//!
//! Every command takes `--home DIR` (default `~/.denet`), `--relay URL` (default
//! `http://127.0.0.1:8787`) and `--json` (one JSON object per line, for scripts).

mod chat;
mod state;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
        #[arg(long)]
        wallet_key: Option<String>,
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
        #[arg(long)]
        password: Option<String>,
    },
    /// Invite a wallet (the room key travels end to end, never the password)
    Invite { room: String, wallet: String },
    /// Join a room you were invited to
    Join {
        room: String,
        #[arg(long)]
        password: Option<String>,
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let home = cli
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".denet"));
    let out = chat::Out { json: cli.json };
    let result = match cli.command {
        Command::Init { wallet_key } => chat::init(&home, wallet_key.as_deref(), &out),
        command => match chat::Ctx::open(home, &cli.relay, out) {
            Ok(mut ctx) => run(&mut ctx, command).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        if cli.json {
            println!("{}", serde_json::json!({"error": e}));
        } else {
            eprintln!("denet: {e}");
        }
        std::process::exit(1);
    }
}

async fn run(ctx: &mut chat::Ctx, command: Command) -> Result<(), String> {
    match command {
        Command::Init { .. } => unreachable!("handled before opening the state"),
        Command::Register => ctx.register().await,
        Command::Revoke => ctx.revoke().await,
        Command::Send { wallet, text, anonymous } => ctx.send(&wallet, &text, anonymous).await,
        Command::Inbox { all } => ctx.inbox(all).await,
        Command::Listen { room, count } => ctx.listen(room.as_deref(), count).await,
        Command::Room(cmd) => match cmd {
            RoomCommand::Create { name, password } => ctx.room_create(&name, password.as_deref()).await,
            RoomCommand::Invite { room, wallet } => ctx.room_invite(&room, &wallet).await,
            RoomCommand::Join { room, password } => ctx.room_join(&room, password.as_deref()).await,
            RoomCommand::Send { room, text } => ctx.room_send(&room, &text).await,
            RoomCommand::Read { room, all } => ctx.room_read(&room, all).await,
            RoomCommand::Leave { room } => ctx.room_leave(&room).await,
            RoomCommand::List => ctx.room_list(),
        },
    }
}
