//! Group chat commands (PROTOCOL.md §8.3): each asks the session for what to post,
//! posts it, and commits the change once the relay took it.

use super::{Ctx, err, print};
use denet_client::room;
use denet_client::session::Session;
use denet_core::{RoomId, Wallet};
use rand_core::OsRng;
use serde_json::json;

impl Ctx {
    pub async fn room_create(&mut self, name: &str, password: Option<&str>) -> Result<(), String> {
        let room_id = Session::fresh_room_id(&mut OsRng);
        let stretched = password.map(|p| room::stretch(p, &room_id)).transpose().map_err(err)?;
        self.driver.session.create_room(&room_id, name, stretched.as_deref(), &mut OsRng).map_err(err)?;
        self.driver.save()?;
        self.copy_room_key(&room_id).await;
        self.out.emit(json!({"room": room_id, "name": name, "password": password.is_some()}), || room_id.clone());
        Ok(())
    }

    pub async fn room_invite(&mut self, room_id: &str, wallet: &str) -> Result<(), String> {
        let to = Wallet::parse_lenient(wallet).map_err(|e| e.message)?;
        let inviting = self.driver.with_keys(|s, now| s.invite(room_id, &to, now, &mut OsRng)).await?;
        let ack = self.driver.relay.post(&inviting.envelope).await.map_err(err)?;
        self.driver.session.commit_invite(inviting);
        self.driver.save()?;
        self.out
            .emit(json!({"room": room_id, "to": to.as_str(), "id": ack.id}), || format!("invited {to} to {room_id}"));
        Ok(())
    }

    pub async fn room_join(&mut self, room_id: &str, from: Option<&str>, password: Option<&str>) -> Result<(), String> {
        RoomId::parse(room_id).map_err(|e| e.message)?;
        let inviter = from.map(Wallet::parse_lenient).transpose().map_err(|e| e.message)?;
        let me = self.me.to_string();
        self.driver.pull(&me, false, &mut |_| {}).await?;
        let stretched = password.map(|p| room::stretch(p, room_id)).transpose().map_err(err)?;
        let joining = self
            .driver
            .with_keys(|s, now| s.join(room_id, inviter.as_ref(), stretched.as_deref(), now, &mut OsRng))
            .await?;
        self.driver.relay.post(&joining.envelope).await.map_err(err)?;
        let (name, epoch) = (joining.state.name.clone(), joining.state.epoch);
        self.driver.session.commit_join(joining);
        self.driver.save()?;
        self.copy_room_key(room_id).await;
        self.out.emit(json!({"room": room_id, "name": name, "epoch": epoch}), || format!("joined {room_id} ({name})"));
        Ok(())
    }

    pub async fn room_send(&mut self, room_id: &str, text: &str) -> Result<(), String> {
        let envelope = self.driver.with_keys(|s, now| s.room_text(room_id, text, now, &mut OsRng)).await?;
        let ack = self.driver.deliver(&envelope).await?;
        let epoch = self.driver.session.room(room_id).map_err(err)?.epoch;
        self.out.emit(json!({"room": room_id, "id": ack.id, "seq": ack.seq, "epoch": epoch}), || {
            format!("sent to {room_id}")
        });
        Ok(())
    }

    pub async fn room_read(&mut self, room_id: &str, all: bool) -> Result<(), String> {
        self.driver.session.room(room_id).map_err(err)?;
        let out = &self.out;
        self.driver.pull(room_id, all, &mut |seen| print(out, seen)).await
    }

    pub async fn room_leave(&mut self, room_id: &str) -> Result<(), String> {
        let envelope = self.driver.with_keys(|s, now| s.leave(room_id, now, &mut OsRng)).await?;
        let ack = self.driver.relay.post(&envelope).await.map_err(err)?;
        self.driver.session.commit_leave(room_id);
        self.driver.save()?;
        self.out.emit(json!({"room": room_id, "id": ack.id, "left": true}), || format!("left {room_id}"));
        Ok(())
    }

    pub fn room_list(&self) -> Result<(), String> {
        let state = self.driver.session.state();
        for (id, r) in &state.rooms {
            let item = json!({"room": id, "name": r.name, "epoch": r.epoch, "members": r.members, "joined": !r.left, "password": r.stretched.is_some()});
            self.out.emit(item, || {
                format!(
                    "{id} {:?} epoch {} {} member(s){}",
                    r.name,
                    r.epoch,
                    r.members.len(),
                    if r.left { " (left)" } else { "" }
                )
            });
        }
        for (id, by) in &state.invites {
            for (from, inv) in by {
                self.out.emit(json!({"room": id, "name": inv.name, "invited_by": from}), || {
                    format!("{id} {:?} invited by {from} (not joined)", inv.name)
                });
            }
        }
        Ok(())
    }
}
