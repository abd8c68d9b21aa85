// A minimal app built by Vite from the packed npm tarball: the way a user consumes us.
import init, { MPushClient } from "mpush-client-wasm";

const q = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

async function main() {
  await init();
  const client = new MPushClient({
    url: q.get("ws"),
    publicKey: q.get("key"),
    userId: q.get("user"),
    storage: "memory",
  });
  client.on("state", (s) => { $("state").textContent = s; document.body.dataset.state = s; });
  client.on("bind", (b) => { document.body.dataset.bound = b.userId; });
  client.on("push", (m) => { $("pushes").textContent += m.text() + ";"; });
  await client.connect();
}

main().catch((e) => { document.body.dataset.error = `${e.code || ""} ${e.message}`; });
