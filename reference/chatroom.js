// The chat room of tests/apps/chatroom/worker.py, in JavaScript, for the parity tests:
// everything the object sends while handling the upgrade request (the history replayed to
// the joiner, the "joined" broadcast that reaches the joiner too) leaves before its 101.
//   /ws?room=R&name=N&mode=accept|hibernate[&store=1]
export default {
  async fetch(request, env) {
    const room = new URL(request.url).searchParams.get("room") || "lobby";
    return await env.ROOM.get(env.ROOM.idFromName(room)).fetch(request);
  }
};

export class Room {
  constructor(state, env) {
    this.state = state;
    this.history = [];
    this.listeners = [];
  }

  async fetch(request) {
    const params = new URL(request.url).searchParams;
    const name = params.get("name") || "anon";
    if (params.get("store") === "1") {
      await this.state.storage.put("last-joined", name);
    }
    const [client, server] = Object.values(new WebSocketPair());
    if (params.get("mode") === "hibernate") {
      this.state.acceptWebSocket(server);
      server.serializeAttachment(name);
    } else {
      server.accept();
      this.listeners.push(server);
      server.addEventListener("message", event => {
        this.broadcast(`${name}: ${event.data}`);
      });
      server.addEventListener("close", event => {
        this.listeners.splice(this.listeners.indexOf(server), 1);
        server.close(event.code, "bye");
      });
    }
    for (const line of this.history) {
      server.send(`history: ${line}`);
    }
    const line = `joined: ${name}`;
    this.history.push(line);
    this.broadcast(line);
    return new Response(null, { status: 101, webSocket: client });
  }

  broadcast(line) {
    for (const ws of this.listeners) ws.send(line);
    for (const ws of this.state.getWebSockets()) ws.send(line);
  }

  async webSocketMessage(ws, message) {
    this.broadcast(`${ws.deserializeAttachment()}: ${message}`);
  }

  async webSocketClose(ws, code, reason, wasClean) {
    ws.close(code, "bye");
  }
}
