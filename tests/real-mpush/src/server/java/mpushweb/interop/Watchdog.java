package mpushweb.interop;

import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.util.Arrays;

/**
 * Runs another class's {@code main} and halts the JVM when standard input reaches end of file.
 *
 * <pre>java -cp ... mpushweb.interop.Watchdog com.mpush.bootstrap.Main [args...]</pre>
 *
 * <p>{@code stacks.mjs} starts ZooKeeper, MPUSH and the PushApi through this class with a pipe as
 * stdin. The pipe closes when the Node process ends for any reason (even SIGKILL, which no exit
 * handler sees), so no JVM outlives the test run. It halts without shutdown hooks: MPUSH's
 * graceful stop takes about 11 s (Netty's quiet periods) and a test stack has nothing to save.
 */
public final class Watchdog {
    private Watchdog() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Watchdog MAIN-CLASS [args...]");
            System.exit(2);
        }
        Thread watch = new Thread(() -> {
            InputStream in = System.in;
            byte[] buf = new byte[64];
            try {
                while (in.read(buf) >= 0) {
                    // nothing is ever sent; only the end of the stream matters
                }
            } catch (IOException ignored) {
                // a broken pipe means the same: the parent is gone
            }
            Runtime.getRuntime().halt(0);
        }, "stdin-watchdog");
        watch.setDaemon(true);
        watch.start();

        Method main = Class.forName(args[0]).getMethod("main", String[].class);
        try {
            main.invoke(null, (Object) Arrays.copyOfRange(args, 1, args.length));
        } catch (InvocationTargetException e) {
            // MPUSH's Main can fail after ZooKeeper's client threads started, which would keep
            // the JVM up and silent: make the failure an exit the caller sees at once.
            e.getCause().printStackTrace();
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }
    }
}
