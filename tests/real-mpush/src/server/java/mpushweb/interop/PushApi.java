package mpushweb.interop;

import com.mpush.api.connection.Connection;
import com.mpush.api.push.AckModel;
import com.mpush.api.push.PushCallback;
import com.mpush.api.push.PushContext;
import com.mpush.api.push.PushResult;
import com.mpush.api.push.PushSender;
import com.mpush.api.srd.ServiceNames;
import com.mpush.client.MPushClient;
import com.mpush.client.gateway.connection.GatewayConnectionFactory;
import com.mpush.common.router.CachedRemoteRouterManager;
import com.mpush.tools.log.Logs;
import com.mpush.zk.ZKClient;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The push API of our gateway ({@code gateway/README.md}, "Push API") in front of the REAL MPUSH:
 * every push goes through MPUSH's own server SDK ({@code PushSender} from mpush-client 0.8.0),
 * which finds the user's route in Redis and the gateway server in ZooKeeper, exactly as an MPUSH
 * application server does. The results are the codes of MPUSH's {@code PushCallback}.
 *
 * <pre>
 * java -Dmp.conf=pushapi.conf -cp 'classes-server:lib-server/*' mpushweb.interop.PushApi [--listen 127.0.0.1:0]
 * push-api: listening on http://127.0.0.1:PORT
 * </pre>
 *
 * <p>{@code POST /push}: exactly one of {@code userId} / {@code userIds}, exactly one of
 * {@code content} / {@code contentBase64}, {@code ack} none|auto|biz, {@code timeoutMs}
 * (default 3000, MPUSH's), {@code freshRoutes} (read the users' routes from Redis, not from
 * PushSender's 5-minute route cache). {@code tags} and {@code broadcast} are refused: MPUSH's broadcast
 * reports one result for the whole broadcast, not one per user. {@code GET /health}: 200 when
 * PushSender runs and ZooKeeper holds at least one gateway server, with the registered nodes.
 */
public final class PushApi {
    private static final int MAX_BODY = 1024 * 1024;
    private static final long DEFAULT_TIMEOUT_MS = 3000;
    private static final long MAX_TIMEOUT_MS = 600_000;
    private static final Set<String> FIELDS = new HashSet<>(Arrays.asList(
            "userId", "userIds", "tags", "broadcast", "content", "contentBase64", "ack", "timeoutMs", "freshRoutes"));

    private final PushSender sender;
    private final GatewayConnectionFactory gateways;
    private final CachedRemoteRouterManager routes;

    private PushApi(PushSender sender, GatewayConnectionFactory gateways, CachedRemoteRouterManager routes) {
        this.sender = sender;
        this.gateways = gateways;
        this.routes = routes;
    }

    public static void main(String[] args) throws Exception {
        String listen = "127.0.0.1:0";
        for (int k = 0; k < args.length; k++) {
            if (args[k].equals("--listen") && k + 1 < args.length) listen = args[++k];
            else die("usage: PushApi [--listen HOST:PORT]");
        }
        int colon = listen.lastIndexOf(':');
        if (colon < 0) die("--listen wants HOST:PORT, got " + listen);

        // MPUSH's log setup (log.home, level, logback file) must run before anything logs.
        Logs.init();
        PushSender sender = PushSender.create();
        // PushClient creates its MPushClient (its context) on start unless given one: give it
        // ours, to see its gateway connections in /health.
        MPushClient context = new MPushClient();
        sender.setMPushContext(context);
        // Connects ZooKeeper (service discovery), Redis (routes) and the gateway servers.
        if (!sender.syncStart()) die("PushSender did not start (ZooKeeper or Redis unreachable?)");

        PushApi api = new PushApi(sender, context.getGatewayConnectionFactory(), context.getCachedRemoteRouterManager());
        HttpServer http = HttpServer.create(
                new InetSocketAddress(listen.substring(0, colon), Integer.parseInt(listen.substring(colon + 1))), 64);
        http.createContext("/", api::handle);
        http.setExecutor(Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "push-api-http");
            t.setDaemon(true);
            return t;
        }));
        http.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            http.stop(0);
            sender.syncStop();
        }, "push-api-shutdown"));
        System.out.println("push-api: listening on http://" + listen.substring(0, colon) + ":"
                + http.getAddress().getPort());
        System.out.flush();
    }

    private static void die(String msg) {
        System.err.println("push-api: " + msg);
        System.exit(2);
    }

    private void handle(HttpExchange ex) throws IOException {
        try {
            String path = ex.getRequestURI().getPath();
            String method = ex.getRequestMethod();
            if (path.equals("/health")) {
                if (method.equals("GET")) health(ex);
                else reply(ex, 405, error("method not allowed"));
            } else if (path.equals("/push")) {
                if (method.equals("POST")) push(ex);
                else reply(ex, 405, error("method not allowed"));
            } else {
                reply(ex, 404, error("not found"));
            }
        } catch (Throwable t) {
            reply(ex, 500, error("internal error: " + t));
        } finally {
            ex.close();
        }
    }

    private void health(HttpExchange ex) throws IOException {
        List<Map<String, Object>> gs = nodes(ServiceNames.GATEWAY_SERVER);
        List<Map<String, Object>> cs = nodes(ServiceNames.CONN_SERVER);
        boolean connected = false;
        for (Map<String, Object> n : gs) {
            if (!(n.get("node") instanceof Map)) continue;
            Map<?, ?> node = (Map<?, ?>) n.get("node");
            boolean c = connectedTo(node.get("host") + ":" + node.get("port"));
            n.put("connected", c);
            connected |= c;
        }
        boolean ok = sender.isRunning() && connected;
        reply(ex, ok ? 200 : 503, Json.obj(
                "status", ok ? "ok" : gs.isEmpty() ? "no gateway server registered in ZooKeeper"
                        : "PushSender has no connection to a gateway server",
                "connectServers", cs,
                "gatewayServers", gs));
    }

    /**
     * Whether PushSender holds a live connection to a gateway server. Asking also repairs: MPUSH
     * 0.8.0's GatewayTCPConnectionFactory.getConnection re-adds a missing connection from
     * ZooKeeper but returns null on that first call (it re-checks a stale local variable), so
     * the first push after a gateway server re-registers on the same host:port fails unless
     * someone asked once before. The second call sees the repaired connection.
     */
    private boolean connectedTo(String hostAndPort) {
        Connection c = gateways.getConnection(hostAndPort);
        if (c == null) c = gateways.getConnection(hostAndPort);
        return c != null && c.isConnected();
    }

    /** The registered nodes under a service path, each with its ZooKeeper node name as "id". */
    private static List<Map<String, Object>> nodes(String servicePath) {
        List<Map<String, Object>> out = new ArrayList<>();
        List<String> keys = ZKClient.I.getChildrenKeys(servicePath);
        if (keys == null) return out;
        for (String key : keys) {
            String data = ZKClient.I.get(servicePath + "/" + key);
            if (data == null) continue;
            Object node;
            try {
                node = Json.parse(data);
            } catch (IllegalArgumentException e) {
                node = data;
            }
            out.add(Json.obj("id", key, "node", node));
        }
        return out;
    }

    private void push(HttpExchange ex) throws IOException {
        byte[] raw = readBody(ex.getRequestBody());
        if (raw == null) {
            reply(ex, 413, error("body too large or unreadable"));
            return;
        }
        Request req;
        try {
            req = Request.parse(new String(raw, StandardCharsets.UTF_8));
        } catch (IllegalArgumentException e) {
            reply(ex, 400, error(e.getMessage()));
            return;
        }

        // One PushContext per user, so each result names its user. A user with connections of
        // several client types gets one callback per connection (PushClient sends one
        // PushRequest per route): the first result is taken, but a later success within the
        // wait wins (the gateway reports success when one of them succeeds).
        Map<String, CompletableFuture<PushResult>> firsts = new LinkedHashMap<>();
        Map<String, PushResult> best = new java.util.concurrent.ConcurrentHashMap<>();
        for (String userId : req.userIds) {
            if (firsts.containsKey(userId)) continue;
            CompletableFuture<PushResult> first = new CompletableFuture<>();
            firsts.put(userId, first);
            // PushSender keeps each user's routes for 5 minutes (CachedRemoteRouterManager) and a
            // "failure" does not drop them: after a connection server died, pushes to its users
            // keep going to it. freshRoutes reads the routes from Redis again, as an application
            // server must after a failover (tests/real-mpush/cluster.mjs).
            if (req.freshRoutes) routes.invalidateLocalCache(userId);
            PushContext ctx = new PushContext(req.content)
                    .setUserId(userId)
                    .setAckModel(req.ack)
                    .setTimeout((int) req.timeoutMs)
                    .setCallback(new PushCallback() {
                        @Override
                        public void onResult(PushResult result) {
                            best.merge(userId, result, (a, b) ->
                                    b.resultCode == PushResult.CODE_SUCCESS ? b : a);
                            first.complete(result);
                        }
                    });
            sender.send(ctx);
        }

        List<Object> results = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(req.timeoutMs + 5000);
        for (Map.Entry<String, CompletableFuture<PushResult>> e : firsts.entrySet()) {
            try {
                e.getValue().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (TimeoutException t) {
                // PushSender always calls back (its own timer fires after timeoutMs): no
                // callback at all is a fault of this harness, not a push result.
                reply(ex, 500, error("PushSender gave no result for " + e.getKey()
                        + " within timeoutMs + 5 s"));
                return;
            } catch (Exception t) {
                reply(ex, 500, error("push failed: " + t));
                return;
            }
            PushResult r = best.get(e.getKey());
            results.add(Json.obj("userId", e.getKey(), "result", r.getResultDesc(), "code", r.resultCode));
        }
        reply(ex, 200, Json.obj("results", results));
    }

    /** A validated {@code POST /push} body, with the gateway's rules and messages. */
    private static final class Request {
        List<String> userIds = new ArrayList<>();
        byte[] content;
        AckModel ack = AckModel.NO_ACK;
        long timeoutMs = DEFAULT_TIMEOUT_MS;
        boolean freshRoutes;

        static Request parse(String text) {
            Object parsed;
            try {
                parsed = Json.parse(text);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("invalid JSON: " + e.getMessage());
            }
            if (!(parsed instanceof Map)) throw new IllegalArgumentException("invalid JSON: expected an object");
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) parsed;
            for (String k : m.keySet()) {
                if (!FIELDS.contains(k)) throw new IllegalArgumentException("invalid JSON: unknown field `" + k + "`");
            }
            Request r = new Request();
            int targets = (m.get("userId") != null ? 1 : 0) + (m.get("userIds") != null ? 1 : 0)
                    + (m.get("tags") != null ? 1 : 0) + (Boolean.TRUE.equals(m.get("broadcast")) ? 1 : 0);
            if (targets != 1) throw new IllegalArgumentException("give exactly one of userId, userIds, tags, broadcast:true");
            if (m.get("tags") != null || m.get("broadcast") != null) {
                throw new IllegalArgumentException("tags and broadcast are not supported against real MPUSH:"
                        + " its broadcast reports one result for the whole broadcast, not one per user");
            }
            if (m.get("userId") != null) {
                r.userIds.add(string(m.get("userId"), "userId"));
            } else {
                Object us = m.get("userIds");
                if (!(us instanceof List)) throw new IllegalArgumentException("invalid JSON: userIds must be an array of strings");
                for (Object u : (List<?>) us) r.userIds.add(string(u, "userIds"));
            }
            if (r.userIds.isEmpty() || r.userIds.stream().anyMatch(String::isEmpty)) {
                throw new IllegalArgumentException("user ids must not be empty");
            }
            Object content = m.get("content");
            Object b64 = m.get("contentBase64");
            if (content != null && b64 == null) {
                r.content = string(content, "content").getBytes(StandardCharsets.UTF_8);
            } else if (content == null && b64 != null) {
                try {
                    r.content = Base64.getDecoder().decode(string(b64, "contentBase64").trim());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("contentBase64: " + e.getMessage());
                }
            } else {
                throw new IllegalArgumentException("give exactly one of content, contentBase64");
            }
            if (m.get("ack") != null) {
                String a = string(m.get("ack"), "ack").toLowerCase(java.util.Locale.ROOT);
                switch (a) {
                    case "none": case "no_ack": r.ack = AckModel.NO_ACK; break;
                    case "auto": case "auto_ack": r.ack = AckModel.AUTO_ACK; break;
                    case "biz": case "biz_ack": r.ack = AckModel.BIZ_ACK; break;
                    default: throw new IllegalArgumentException("ack must be none, auto or biz, got \"" + a + "\"");
                }
            }
            if (m.get("freshRoutes") != null) {
                if (!(m.get("freshRoutes") instanceof Boolean)) throw new IllegalArgumentException("invalid JSON: freshRoutes must be a boolean");
                r.freshRoutes = (Boolean) m.get("freshRoutes");
            }
            if (m.get("timeoutMs") != null) {
                Object t = m.get("timeoutMs");
                if (!(t instanceof Long)) throw new IllegalArgumentException("invalid JSON: timeoutMs must be an integer");
                r.timeoutMs = (Long) t;
                if (r.timeoutMs < 1 || r.timeoutMs > MAX_TIMEOUT_MS) {
                    throw new IllegalArgumentException("timeoutMs must be in 1..=" + MAX_TIMEOUT_MS);
                }
            }
            return r;
        }

        private static String string(Object v, String field) {
            if (!(v instanceof String)) throw new IllegalArgumentException("invalid JSON: " + field + " must be a string");
            return (String) v;
        }
    }

    private static byte[] readBody(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) {
            out.write(buf, 0, n);
            if (out.size() > MAX_BODY) return null;
        }
        return out.toByteArray();
    }

    private static Map<String, Object> error(String msg) {
        return Json.obj("error", msg);
    }

    private static void reply(HttpExchange ex, int status, Object body) throws IOException {
        byte[] bytes = Json.write(body).getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(bytes);
        }
    }
}
