package mpushweb.interop;

import com.mpush.api.Client;
import com.mpush.api.ClientListener;
import com.mpush.api.Logger;
import com.mpush.api.http.HttpRequest;
import com.mpush.api.http.HttpResponse;
import com.mpush.api.push.AckModel;
import com.mpush.api.push.PushCallback;
import com.mpush.api.push.PushContext;
import com.mpush.client.ClientConfig;
import com.mpush.message.ErrorMessage;
import com.mpush.message.FastConnectOkMessage;
import com.mpush.message.HandshakeOkMessage;
import com.mpush.message.OkMessage;
import com.mpush.util.thread.ExecutorManager;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * Drives MPUSH's Java client SDK (com.github.mpusher:mpush-client-java:0.0.5, plain TCP) through
 * one scenario against a connection server (the real MPUSH or our mpush-gateway) and prints one
 * JSON line per observation on stdout. The SDK's own log goes to stderr.
 *
 * <pre>
 * java -cp 'classes-client:lib-client/*' mpushweb.interop.JavaClientDriver SCENARIO \
 *      --host 127.0.0.1 --port 3000 --public-key MIGf... --push-api http://127.0.0.1:8081 \
 *      [--http-base http://interop.test] [--min-heartbeat 1000] [--max-heartbeat 60000] \
 *      [--work-dir DIR] [--id RUN]
 * </pre>
 *
 * <p>Scenarios: {@value #SCENARIOS}. Each line is {@code {"client":"A","event":...}}; a second
 * client (kick, fast connect after a restart of the client) runs in a child JVM of this class and
 * its lines come through with {@code "client":"B"}. The last line is {@code {"event":"done"}}, or
 * {@code {"event":"fail","reason":...}} with exit code 1 when a step did not happen in time.
 *
 * <p>The SDK has no callback for Ok/Error replies, fast connect or heartbeat echoes; it logs them
 * through its {@link Logger} interface with the decoded message objects as arguments, so a
 * Logger installed with {@code ClientConfig.setLogger} is where those are observed.
 */
public final class JavaClientDriver {
    static final String SCENARIOS = "handshake, repeat-handshake, bind, push, close-before-ack, upstream, http, http-large,"
            + " fast-connect, fast-connect-other-device, kick, session-save, session-resume";
    private static final long STEP_MS = 8000;

    private final Map<String, String> opt;
    private final String name;
    private final long t0 = System.nanoTime();
    private final List<Map<String, Object>> log = new ArrayList<>();
    private Client client;
    private volatile boolean ackBiz = true;
    private volatile Map<String, Object> pendingConnect;
    private final List<Process> children = new ArrayList<>();

    private JavaClientDriver(Map<String, String> opt) {
        this.opt = opt;
        this.name = opt.getOrDefault("client-name", "A");
    }

    public static void main(String[] args) {
        if (args.length < 1 || args[0].startsWith("-")) usage("no scenario");
        Map<String, String> opt = new HashMap<>();
        opt.put("scenario", args[0]);
        for (int k = 1; k < args.length; k++) {
            if (!args[k].startsWith("--") || k + 1 >= args.length) usage("bad argument " + args[k]);
            opt.put(args[k].substring(2), args[++k]);
        }
        for (String req : new String[]{"host", "port", "public-key"}) {
            if (!opt.containsKey(req)) usage("--" + req + " is required");
        }
        JavaClientDriver d = new JavaClientDriver(opt);
        int code = 0;
        try {
            d.run(opt.get("scenario"));
            d.emit("done");
        } catch (StepFailed e) {
            d.emit("fail", "reason", e.getMessage());
            code = 1;
        } catch (Throwable t) {
            d.emit("fail", "reason", "driver error: " + t);
            t.printStackTrace();
            code = 1;
        } finally {
            d.shutdown();
        }
        System.out.flush();
        // The SDK's threads are not daemons: leave explicitly.
        Runtime.getRuntime().halt(code);
    }

    private static void usage(String why) {
        System.err.println("JavaClientDriver: " + why + "\nusage: JavaClientDriver SCENARIO --host H --port P"
                + " --public-key K [--push-api URL] [--http-base URL] [--min-heartbeat MS] [--max-heartbeat MS]"
                + " [--work-dir DIR] [--id RUN]\nscenarios: " + SCENARIOS);
        System.exit(2);
    }

    // ---------------------------------------------------------------- scenarios

    private void run(String scenario) throws Exception {
        String id = opt.getOrDefault("id", "run");
        switch (scenario) {
            case "handshake": {
                start("dev-hs-" + id);
                int hb = ((Number) await("handshake-ok").get("heartbeat")).intValue();
                // The SDK sends 0xDF when it has written nothing for heartbeat - 1 s (healthCheck,
                // which the app calls on a timer); the server echoes each one.
                awaitCount("heartbeat-echo", 2, 3L * hb + 3000);
                emit("heartbeats-echoed", "atLeast", 2);
                expectNo("disconnected", 0);
                break;
            }
            case "bind": {
                String u1 = "bind-u1-" + id, u2 = "bind-u2-" + id;
                start("dev-bind-" + id);
                await("handshake-ok");
                bind(u1);
                pushAndReceive(u1, "to u1", "none");
                emit("step", "do", "unbind");
                int from = log.size();
                client.unbindUser();
                await(from, e -> is(e, "ok") && num(e, "cmd") == 6, "ok for unbind");
                pushResult(u1, "offline", "none", 3000);
                bind(u1);
                emit("step", "do", "bind u2 (the SDK unbinds u1 first)");
                from = log.size();
                client.bindUser(u2);
                await(from, e -> is(e, "ok") && num(e, "cmd") == 6, "ok for the implicit unbind");
                await(from, e -> is(e, "ok") && num(e, "cmd") == 5, "ok for bind u2");
                pushResult(u1, "offline", "none", 3000);
                pushAndReceive(u2, "to u2", "none");
                break;
            }
            case "push": {
                String u = "push-u-" + id;
                start("dev-push-" + id);
                await("handshake-ok");
                bind(u);
                pushAndReceive(u, "no ack \u2713", "none");
                pushAndReceive(u, "auto ack \u2713", "auto");
                pushAndReceive(u, "biz ack \u2713", "biz");
                // biz push the application never acks: the pusher times out
                ackBiz = false;
                int from = log.size();
                CompletableFuture<Map<String, Object>> r = pushApiAsync(Json.obj("userId", u,
                        "content", "expect timeout", "ack", "biz", "timeoutMs", 1500L));
                await(from, e -> is(e, "push"), "the unacked biz push");
                emit("push-result", "request", "biz: expect timeout", "response", r.get(20, TimeUnit.SECONDS));
                ackBiz = true;
                // binary content, auto ack
                byte[] bin = new byte[300];
                for (int k = 0; k < bin.length; k++) bin[k] = (byte) (k * 7);
                from = log.size();
                r = pushApiAsync(Json.obj("userId", u, "contentBase64",
                        java.util.Base64.getEncoder().encodeToString(bin), "ack", "auto", "timeoutMs", 3000L));
                await(from, e -> is(e, "push") && bin.length == num(e, "length"), "the binary push");
                await(from, e -> is(e, "ack-sent"), "ack for the binary push");
                emit("push-result", "request", "binary auto", "response", r.get(20, TimeUnit.SECONDS));
                // several users at once, one of them offline
                from = log.size();
                r = pushApiAsync(Json.obj("userIds", Arrays.asList(u, "nobody-" + id), "content", "many",
                        "ack", "auto", "timeoutMs", 3000L));
                await(from, e -> is(e, "push") && "many".equals(e.get("content")), "push \"many\"");
                await(from, e -> is(e, "ack-sent"), "ack for \"many\"");
                emit("push-result", "request", "userIds", "response", r.get(20, TimeUnit.SECONDS));
                break;
            }
            case "close-before-ack": {
                // A biz push the client receives but never acks: it closes its connection
                // instead. What does the pusher report, and when?
                String u = "cba-u-" + id;
                start("dev-cba-" + id);
                await("handshake-ok");
                bind(u);
                ackBiz = false;
                int from = log.size();
                long sent = System.nanoTime();
                CompletableFuture<Map<String, Object>> r = pushApiAsync(Json.obj("userId", u,
                        "content", "never acked", "ack", "biz", "timeoutMs", 2000L));
                await(from, e -> is(e, "push"), "the biz push");
                stopClient();
                Map<String, Object> res = r.get(20, TimeUnit.SECONDS);
                long ms = (System.nanoTime() - sent) / 1_000_000;
                // Only the side of the timeout it came on is compared, not the exact time.
                emit("push-result", "request", "biz, connection closed before the ack", "response", res,
                        "afterTimeout", ms >= 2000);
                break;
            }
            case "upstream": {
                start("dev-up-" + id);
                await("handshake-ok");
                bind("up-u-" + id);
                upstream("up auto", AckModel.AUTO_ACK, 3000);
                // MPUSH's ClientPushHandler acks only AUTO_ACK pushes: a biz push times out
                upstream("up biz", AckModel.BIZ_ACK, 1500);
                break;
            }
            case "http": {
                start("dev-http-" + id);
                await("handshake-ok");
                String base = need("http-base");
                http(HttpRequest.buildGet(base + "/echo?x=1&y=%C3%A9"), "GET /echo");
                byte[] form = "name=mpush&lang=java".getBytes(StandardCharsets.UTF_8);
                http(HttpRequest.buildPost(base + "/echo/post").setBody(form, "application/x-www-form-urlencoded"),
                        "POST /echo/post");
                http(HttpRequest.buildGet(base + "/status/404"), "GET /status/404");
                break;
            }
            case "http-large": {
                start("dev-big-" + id);
                await("handshake-ok");
                String base = need("http-base");
                // 12 KB up: the SDK compresses bodies over 1 KB, so the packet stays under
                // MPUSH's 10 KB inbound limit while the request body is over it.
                StringBuilder sb = new StringBuilder();
                for (int k = 0; sb.length() < 12 * 1024; k++) sb.append("line ").append(k).append(" of a big body\n");
                http(HttpRequest.buildPost(base + "/echo/big").setBody(sb.toString().getBytes(StandardCharsets.UTF_8),
                        "text/plain"), "POST 12 KB");
                // 30 KB down: over the server's 10 KB compress threshold
                http(HttpRequest.buildGet(base + "/big?n=30000"), "GET 30 KB");
                break;
            }
            case "fast-connect": {
                // Client restart with a persisted session: the child JVM is the restarted app.
                String dir = sessionDir("fc");
                String dev = "dev-fc-" + id;
                start(dev, dir);
                await("handshake-ok");
                bind("fc-u-" + id);
                stopClient();
                Map<String, Object> b = child("session-resume", "B", dev, dir, "fc-u-" + id);
                if (!"fast-connect-ok".equals(b.get("connectedBy"))) {
                    throw new StepFailed("the restarted client did not fast connect: " + b.get("connectedBy"));
                }
                break;
            }
            case "fast-connect-other-device": {
                String dir = sessionDir("fcd");
                start("dev-fcd-" + id, dir);
                await("handshake-ok");
                stopClient();
                // Same stored session, another device id: the server refuses the fast
                // connect and the SDK falls back to a full handshake.
                child("session-resume", "B", "dev-fcd-other-" + id, dir, "");
                break;
            }
            case "repeat-handshake": {
                start("dev-rh-" + id);
                await("handshake-ok");
                // A second handshake on the same connection (same device id). The SDK switches
                // to the new key right after sending; the server refuses with an unencrypted
                // Error, and the SDK stops itself on an Error for a handshake.
                // The SDK logs "<<< do handshake" only after the write, so the server's Error can
                // be read (and logged) first: mark the second handshake here, before the write.
                int from = log.size();
                emit("step", "do", "second handshake");
                client.handshake();
                await(from, e -> is(e, "error") && num(e, "cmd") == 2, "error for the second handshake");
                break;
            }
            case "kick": {
                String u = "kick-u-" + id;
                start("dev-kick-a-" + id);
                await("handshake-ok");
                bind(u);
                int from = log.size();
                Process b = spawn("kick-second", "B", "dev-kick-b-" + id, sessionDir("kick-b"), u);
                await(from, e -> is(e, "ok", "B") && num(e, "cmd") == 5, "B bound");
                await(from, e -> is(e, "kick", name), "kick on A");
                // The user's pushes now go to B only.
                CompletableFuture<Map<String, Object>> r = pushApiAsync(Json.obj("userId", u, "content",
                        "after kick", "ack", "auto", "timeoutMs", 3000L));
                await(from, e -> is(e, "push", "B"), "push on B");
                await(from, e -> is(e, "ack-sent", "B"), "ack from B");
                emit("push-result", "request", "after kick", "response", r.get(20, TimeUnit.SECONDS));
                Thread.sleep(300);
                expectNo("push", from);
                finish(b);
                break;
            }
            case "kick-second": // child role: bind the same user, receive one push, wait for stdin EOF
                start(opt.get("device"));
                await("handshake-ok");
                bind(opt.get("user"));
                await("push");
                waitForStdinEof();
                break;
            case "session-save": // handshake, bind, stop: leaves the session in --work-dir
                start(opt.getOrDefault("device", "dev-ss-" + id));
                await("handshake-ok");
                if (opt.containsKey("user")) bind(opt.get("user"));
                stopClient();
                break;
            case "session-resume": { // connect with the stored session (fast connect or handshake)
                start(opt.getOrDefault("device", "dev-ss-" + id));
                Map<String, Object> e = await(0, x -> is(x, "handshake-ok") || is(x, "fast-connect-ok"),
                        "handshake or fast connect");
                emit("resumed", "connectedBy", e.get("event"));
                String u = opt.getOrDefault("user", "");
                if (!u.isEmpty()) {
                    bind(u);
                    pushAndReceive(u, "after resume", "auto");
                }
                break;
            }
            default:
                usage("unknown scenario " + scenario);
        }
    }

    // ---------------------------------------------------------------- steps

    private void start(String deviceId) {
        start(deviceId, opt.getOrDefault("session-dir", sessionDir("a")));
    }

    /** Starts the SDK client; it fast connects when {@code sessionDir} holds a session. */
    private void start(String deviceId, String sessionDir) {
        ClientConfig cfg = ClientConfig.build()
                .setLogger(new Observer())
                .setPublicKey(opt.get("public-key"))
                .setServerHost(opt.get("host"))
                .setServerPort(Integer.parseInt(opt.get("port")))
                .setDeviceId(deviceId)
                .setOsName("android")
                .setOsVersion("6.0")
                .setClientVersion("0.0.5")
                .setMinHeartbeat(Integer.parseInt(opt.getOrDefault("min-heartbeat", "1000")))
                .setMaxHeartbeat(Integer.parseInt(opt.getOrDefault("max-heartbeat", "60000")))
                .setSessionStorageDir(sessionDir)
                .setClientListener(new Listener());
        cfg.setLogEnabled(true);
        client = cfg.create();
        client.start();
    }

    private void stopClient() throws InterruptedException {
        // No wait for onDisConnected: the SDK interrupts its reader first, which closes the
        // channel, and then skips the callback because the channel is already closed.
        client.stop();
        emit("stopped");
        Thread.sleep(100);
    }

    private void bind(String user) {
        emit("step", "do", "bind " + user);
        int from = log.size();
        client.bindUser(user);
        await(from, e -> (is(e, "ok") || is(e, "error")) && num(e, "cmd") == 5, "reply to bind " + user);
    }

    /**
     * Pushes through the push API and waits for the delivery (and the client's ack), then for
     * the pusher's result. The request runs beside the wait, and the result is reported after
     * the delivery, so the order of the lines does not depend on which side is faster (with no
     * ack, "success" means written, and may come back before the client has read it).
     */
    private void pushAndReceive(String user, String content, String ack) throws Exception {
        int from = log.size();
        CompletableFuture<Map<String, Object>> r = pushApiAsync(
                Json.obj("userId", user, "content", content, "ack", ack, "timeoutMs", 3000L));
        await(from, e -> is(e, "push") && content.equals(e.get("content")), "push \"" + content + "\"");
        if (!ack.equals("none")) await(from, e -> is(e, "ack-sent"), "ack for \"" + content + "\"");
        emit("push-result", "request", ack + ": " + content, "response", r.get(20, TimeUnit.SECONDS));
    }

    private void pushResult(String user, String expectResult, String ack, long timeoutMs) throws Exception {
        Map<String, Object> r = pushApi(Json.obj("userId", user, "content", "expect " + expectResult, "ack", ack,
                "timeoutMs", timeoutMs));
        emit("push-result", "request", ack + ": expect " + expectResult, "response", r);
    }

    private CompletableFuture<Map<String, Object>> pushApiAsync(Map<String, Object> body) {
        CompletableFuture<Map<String, Object>> f = new CompletableFuture<>();
        Thread t = new Thread(() -> {
            try {
                f.complete(pushApi(body));
            } catch (Throwable e) {
                f.completeExceptionally(e);
            }
        }, "driver-push-api");
        t.setDaemon(true);
        t.start();
        return f;
    }

    private void upstream(String text, AckModel ack, int timeoutMs) throws Exception {
        PushContext ctx = PushContext.build(text).setAckModel(ack).setTimeout(timeoutMs).setCallback(new PushCallback() {
            @Override
            public void onSuccess() {
                emit("upstream-result", "content", text, "result", "success");
            }

            @Override
            public void onTimeout() {
                emit("upstream-result", "content", text, "result", "timeout");
            }
        });
        int from = log.size();
        Future<Boolean> f = registeredBeforeWrite(() -> client.push(ctx));
        if (f == null) throw new StepFailed("client.push returned null (no handshake?)");
        await(from, e -> is(e, "upstream-result") && text.equals(e.get("content")), "upstream result", timeoutMs + 3000);
    }

    /**
     * SDK race: MPushClient.push() and sendHttp() hand the packet to the writer thread and only
     * then register the request (AckMessageQueue.add / HttpRequestQueue.add: put in a map, then
     * set the timer). A server that answers within microseconds (our gateway does on loopback)
     * finds no request, or one whose timer is still null: NullPointerException in the SDK's
     * handler, which then reconnects. Holding the SDK's single writer thread until the call
     * has returned makes the scenario test the server, not that race.
     */
    private static <T> T registeredBeforeWrite(java.util.function.Supplier<T> send) {
        CountDownLatch registered = new CountDownLatch(1);
        ExecutorManager.INSTANCE.getWriteThread().execute(() -> {
            try {
                registered.await(5, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
        });
        try {
            return send.get();
        } finally {
            registered.countDown();
        }
    }

    private void http(HttpRequest req, String label) throws Exception {
        req.setTimeout(5000);
        Future<HttpResponse> f = registeredBeforeWrite(() -> client.sendHttp(req));
        if (f == null) throw new StepFailed("client.sendHttp returned null (no handshake?)");
        HttpResponse r;
        try {
            r = f.get(8, TimeUnit.SECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new StepFailed("no HTTP response for " + label);
        }
        byte[] body = r.body == null ? new byte[0] : r.body;
        Map<String, Object> e = Json.obj("request", label, "status", r.statusCode, "reason", r.reasonPhrase,
                "contentType", header(r.headers, "content-type"), "length", body.length, "sha256", sha256(body));
        if (body.length <= 2048) e.put("body", utf8(body));
        emit("http-response", e);
    }

    private static String header(Map<String, String> headers, String name) {
        if (headers == null) return null;
        for (Map.Entry<String, String> h : headers.entrySet()) {
            if (h.getKey() != null && h.getKey().trim().equalsIgnoreCase(name)) return h.getValue().trim();
        }
        return null;
    }

    // ---------------------------------------------------------------- child clients

    private String sessionDir(String tag) {
        String root = opt.getOrDefault("work-dir", System.getProperty("java.io.tmpdir"));
        File d = new File(root, "java-client-" + opt.getOrDefault("id", "run") + "-" + tag);
        if (!d.isDirectory() && !d.mkdirs()) throw new IllegalStateException("cannot create " + d);
        return d.getPath();
    }

    private Process spawn(String scenario, String clientName, String device, String sessionDir, String user)
            throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.add("-Xmx48m");
        cmd.add("-XX:TieredStopAtLevel=1");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(JavaClientDriver.class.getName());
        cmd.add(scenario);
        for (Map.Entry<String, String> o : opt.entrySet()) {
            if (o.getKey().equals("scenario") || o.getKey().equals("client-name") || o.getKey().equals("device")
                    || o.getKey().equals("session-dir") || o.getKey().equals("user")) continue;
            cmd.add("--" + o.getKey());
            cmd.add(o.getValue());
        }
        cmd.addAll(Arrays.asList("--client-name", clientName, "--device", device, "--session-dir", sessionDir,
                "--user", user));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        children.add(p);
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    Object o;
                    try {
                        o = Json.parse(line);
                    } catch (IllegalArgumentException e) {
                        System.err.println("child: " + line);
                        continue;
                    }
                    if (!(o instanceof Map)) continue;
                    @SuppressWarnings("unchecked")
                    Map<String, Object> m = (Map<String, Object>) o;
                    record(m);
                }
            } catch (IOException ignored) {
                // the child's stdout closes when it exits
            }
        }, "child-" + clientName);
        t.setDaemon(true);
        t.start();
        return p;
    }

    /** Runs a child client to completion and returns its "resumed" line (or an empty map). */
    private Map<String, Object> child(String scenario, String clientName, String device, String dir, String user)
            throws Exception {
        int from = log.size();
        Process p = spawn(scenario, clientName, device, dir, user);
        p.getOutputStream().close();
        Map<String, Object> end = await(from, e -> clientName.equals(e.get("client"))
                && (is(e, "done", clientName) || is(e, "fail", clientName)), "child " + clientName + " to finish", 20000);
        p.waitFor(5, TimeUnit.SECONDS);
        if (is(end, "fail", clientName)) throw new StepFailed("child " + clientName + " failed: " + end.get("reason"));
        synchronized (log) {
            for (int k = from; k < log.size(); k++) {
                if (is(log.get(k), "resumed", clientName)) return log.get(k);
            }
        }
        return new HashMap<>();
    }

    private void finish(Process p) throws Exception {
        int from = 0;
        p.getOutputStream().close();
        await(from, e -> "B".equals(e.get("client")) && (is(e, "done", "B") || is(e, "fail", "B")), "child B to finish", 10000);
        p.waitFor(5, TimeUnit.SECONDS);
    }

    private static void waitForStdinEof() throws IOException {
        InputStream in = System.in;
        byte[] buf = new byte[256];
        while (in.read(buf) >= 0) {
            // the parent closes our stdin when it is done with us
        }
    }

    private void shutdown() {
        for (Process p : children) {
            if (p.isAlive()) p.destroyForcibly();
        }
        if (client != null) {
            try {
                client.stop();
            } catch (Throwable ignored) {
                // exiting anyway
            }
        }
    }

    // ---------------------------------------------------------------- push API

    private Map<String, Object> pushApi(Map<String, Object> body) throws IOException {
        URL url = new URL(need("push-api") + "/push");
        HttpURLConnection c = (HttpURLConnection) url.openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setConnectTimeout(3000);
        c.setReadTimeout(20000);
        c.setRequestProperty("Content-Type", "application/json");
        try (OutputStream os = c.getOutputStream()) {
            os.write(Json.write(body).getBytes(StandardCharsets.UTF_8));
        }
        int status = c.getResponseCode();
        InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
        String text = in == null ? "" : new String(readAll(in), StandardCharsets.UTF_8);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("status", status);
        try {
            out.put("body", Json.parse(text));
        } catch (IllegalArgumentException e) {
            out.put("body", text);
        }
        return out;
    }

    private String need(String key) {
        String v = opt.get(key);
        if (v == null) throw new StepFailed("--" + key + " is required for this scenario");
        return v;
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) out.write(buf, 0, n);
        in.close();
        return out.toByteArray();
    }

    /** The text of a body, or null when it is not valid UTF-8 (binary content). */
    private static String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(b)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            return null;
        }
    }

    private static String sha256(byte[] b) {
        try {
            StringBuilder sb = new StringBuilder();
            for (byte x : MessageDigest.getInstance("SHA-256").digest(b)) sb.append(String.format("%02x", x));
            return sb.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---------------------------------------------------------------- observations

    private void emit(String event, Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("client", name);
        m.put("event", event);
        if (kv.length == 1 && kv[0] instanceof Map) {
            @SuppressWarnings("unchecked")
            Map<String, Object> extra = (Map<String, Object>) kv[0];
            m.putAll(extra);
        } else {
            for (int k = 0; k + 1 < kv.length; k += 2) m.put((String) kv[k], kv[k + 1]);
        }
        m.put("ms", (System.nanoTime() - t0) / 1_000_000);
        record(m);
    }

    private void record(Map<String, Object> m) {
        String line = Json.write(m);
        synchronized (log) {
            log.add(m);
            System.out.println(line);
            System.out.flush();
            log.notifyAll();
        }
    }

    private static boolean is(Map<String, Object> e, String event) {
        return event.equals(e.get("event"));
    }

    private static boolean is(Map<String, Object> e, String event, String client) {
        return event.equals(e.get("event")) && client.equals(e.get("client"));
    }

    private static long num(Map<String, Object> e, String key) {
        Object v = e.get(key);
        return v instanceof Number ? ((Number) v).longValue() : Long.MIN_VALUE;
    }

    private Map<String, Object> await(String event) {
        return await(0, e -> is(e, event, name), event);
    }

    private Map<String, Object> await(int from, Predicate<Map<String, Object>> p, String what) {
        return await(from, p, what, STEP_MS);
    }

    private Map<String, Object> await(int from, Predicate<Map<String, Object>> p, String what, long ms) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        synchronized (log) {
            int k = from;
            while (true) {
                for (; k < log.size(); k++) {
                    if (p.test(log.get(k))) return log.get(k);
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) throw new StepFailed("timed out after " + ms + " ms waiting for " + what);
                try {
                    TimeUnit.NANOSECONDS.timedWait(log, left);
                } catch (InterruptedException e) {
                    throw new StepFailed("interrupted waiting for " + what);
                }
            }
        }
    }

    private void awaitCount(String event, int n, long ms) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        synchronized (log) {
            while (log.stream().filter(e -> is(e, event, name)).count() < n) {
                long left = deadline - System.nanoTime();
                if (left <= 0) throw new StepFailed("timed out after " + ms + " ms waiting for " + n + " x " + event);
                try {
                    TimeUnit.NANOSECONDS.timedWait(log, left);
                } catch (InterruptedException e) {
                    throw new StepFailed("interrupted");
                }
            }
        }
    }

    private void expectNo(String event, int from) {
        synchronized (log) {
            for (int k = from; k < log.size(); k++) {
                if (is(log.get(k), event, name)) throw new StepFailed("unexpected " + event + " on " + name);
            }
        }
    }

    private static final class StepFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        StepFailed(String msg) {
            super(msg);
        }
    }

    /** The SDK's application callbacks. */
    private final class Listener implements ClientListener {
        private java.util.concurrent.ScheduledExecutorService health;

        @Override
        public void onConnected(Client c) {
            emit("connected");
        }

        @Override
        public void onDisConnected(Client c) {
            emit("disconnected");
        }

        @Override
        public void onHandshakeOk(Client c, int heartbeat) {
            Map<String, Object> e = pendingConnect;
            pendingConnect = null;
            if (e == null) e = Json.obj("event", "handshake-ok", "heartbeat", heartbeat);
            String event = (String) e.remove("event");
            emit(event, e);
            // The app drives heartbeats: MPUSH's Android service calls healthCheck() on an
            // alarm every heartbeat; do the same (twice as often, so a late timer never lets
            // the server's heartbeat + 1 s read timeout pass).
            synchronized (this) {
                if (health == null) {
                    health = java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
                        Thread t = new Thread(r, "driver-health-check");
                        t.setDaemon(true);
                        return t;
                    });
                    long period = Math.max(200, heartbeat / 2);
                    health.scheduleAtFixedRate(() -> {
                        try {
                            c.healthCheck();
                        } catch (Throwable t) {
                            emit("driver-error", "reason", "healthCheck: " + t);
                        }
                    }, period, period, TimeUnit.MILLISECONDS);
                }
            }
        }

        @Override
        public void onReceivePush(Client c, byte[] content, int messageId) {
            Map<String, Object> e = Json.obj("content", utf8(content), "length", content.length,
                    "sha256", sha256(content), "bizAck", messageId > 0);
            emit("push", e);
            if (messageId > 0 && ackBiz) c.ack(messageId);
        }

        @Override
        public void onKickUser(String deviceId, String userId) {
            emit("kick", "deviceId", deviceId, "userId", userId);
        }
    }

    /** The SDK's log: observations that have no callback, and everything to stderr. */
    private final class Observer implements Logger {
        @Override
        public void enable(boolean enabled) {
        }

        @Override
        public void d(String s, Object... args) {
            observe("D", s, args);
        }

        @Override
        public void i(String s, Object... args) {
            observe("I", s, args);
        }

        @Override
        public void w(String s, Object... args) {
            observe("W", s, args);
        }

        @Override
        public void e(Throwable e, String s, Object... args) {
            observe("E", s, args);
            System.err.println("[sdk " + name + "] " + e);
            // Stopping interrupts the SDK's reader, which logs the interrupt as an error.
            if (!(e instanceof java.nio.channels.ClosedByInterruptException)) {
                emit("sdk-error", "message", String.valueOf(s), "exception", String.valueOf(e));
            }
        }

        private void observe(String level, String s, Object... args) {
            String text;
            try {
                text = String.format(s, args);
            } catch (RuntimeException e) {
                text = s + " " + Arrays.toString(args);
            }
            System.err.println("[sdk " + name + " " + level + "] " + text);
            Object a0 = args.length > 0 ? args[0] : null;
            // HandshakeOk / FastConnectOk are logged before the SDK switches its cipher: they
            // are reported from onHandshakeOk, which runs after the switch, so nothing the
            // scenario sends next can race the key change.
            if (a0 instanceof HandshakeOkMessage) {
                HandshakeOkMessage m = (HandshakeOkMessage) a0;
                pendingConnect = Json.obj("event", "handshake-ok", "heartbeat", m.heartbeat, "sessionId", m.sessionId,
                        "serverKeyLength", m.serverKey == null ? 0 : m.serverKey.length,
                        "expiresInMinutes", Math.round((m.expireTime - System.currentTimeMillis()) / 60000.0));
            } else if (a0 instanceof FastConnectOkMessage) {
                pendingConnect = Json.obj("event", "fast-connect-ok", "heartbeat", ((FastConnectOkMessage) a0).heartbeat);
            } else if (a0 instanceof OkMessage) {
                OkMessage m = (OkMessage) a0;
                emit("ok", "cmd", (int) m.cmd, "code", (int) m.code, "data", m.data);
            } else if (a0 instanceof ErrorMessage) {
                ErrorMessage m = (ErrorMessage) a0;
                emit("error", "cmd", (int) m.cmd, "code", (int) m.code, "reason", m.reason, "data", m.data);
            } else if (s.startsWith(">>> receive heartbeat")) {
                emit("heartbeat-echo");
            } else if (s.startsWith("<<< send ack for push")) {
                emit("ack-sent");
            } else if (s.startsWith("<<< do fast connect")) {
                emit("fast-connect-sent");
            } else if (s.startsWith("<<< do handshake")) {
                emit("handshake-sent");
            }
        }
    }
}
