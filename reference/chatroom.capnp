# workerd config serving chatroom.js (the twin of tests/apps/chatroom/worker.py) for the
# parity tests of messages sent before the 101. The listening address is given at run time:
#   workerd serve chatroom.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .chatroom),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const chatroom :Workerd.Worker = (
  modules = [
    (name = "chatroom.js", esModule = embed "chatroom.js"),
  ],
  compatibilityDate = "2024-11-01",
  bindings = [
    (name = "ROOM", durableObjectNamespace = "Room"),
  ],
  durableObjectNamespaces = [
    (className = "Room", uniqueKey = "stateroom-reference-chatroom"),
  ],
  durableObjectStorage = (inMemory = void),
);
