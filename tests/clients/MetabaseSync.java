// What Metabase gets from pg_audience through pgjdbc, its PostgreSQL
// driver: the sync of the database's metadata (schemas the login may use,
// their tables and views, columns with their remarks, the check that each
// table may be selected) and then prepared queries, logged in over TCP with
// a password as an admin of acme, a viewer member of acme and a login that
// is nobody's. Run by scripts/test against tests/clients/fixture.sql:
//   java -cp /usr/share/java/postgresql.jar MetabaseSync.java HOST PORT DATABASE FACTS
// where FACTS is tests/clients/fixture_facts.properties.
// Exits 1 listing every failed check.

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;

public class MetabaseSync {
    // The table types Metabase's sync asks the driver for.
    static final String[] SYNCED_TYPES = {"TABLE", "PARTITIONED TABLE", "VIEW", "FOREIGN TABLE", "MATERIALIZED VIEW"};
    // What fixture.sql holds, as fixture_facts.properties states it for every client test.
    static final Properties FACTS = new Properties();
    static Set<String> VIEWS;
    static List<String> NEVER_SHOWN;
    static List<String> ADMIN_ONLY;

    static List<String> facts(String key) {
        List<String> values = new ArrayList<>();
        for (String v : FACTS.getProperty(key).split(",")) if (!v.isBlank()) values.add(v.strip());
        return values;
    }

    static final List<String> failures = new ArrayList<>();

    static void check(boolean ok, String what) {
        if (!ok) failures.add(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        try (var in = Files.newBufferedReader(Path.of(args[3]))) {
            FACTS.load(in);
        }
        VIEWS = new TreeSet<>(facts("views"));
        NEVER_SHOWN = facts("never_shown");
        ADMIN_ONLY = facts("admin_only");
        List<String> hidden = new ArrayList<>(NEVER_SHOWN);
        hidden.addAll(ADMIN_ONLY);
        for (String login : List.of("admin", "viewer", "outsider")) {
            sync(FACTS.getProperty(login), FACTS.getProperty(login + ".password"), url,
                 new TreeSet<>(facts(login + ".apps")), login.equals("admin") ? NEVER_SHOWN : hidden);
        }
        if (!failures.isEmpty()) {
            System.err.println(failures.size() + " checks failed:");
            failures.forEach(f -> System.err.println("  " + f));
            System.exit(1);
        }
        System.out.println("pgjdbc (Metabase's sync and queries): every check passed for 3 logins");
    }

    static void sync(String user, String password, String url, Set<String> apps, List<String> hidden) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        // Metabase's default: server-side prepared statements after a few uses.
        props.setProperty("prepareThreshold", "1");
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = c.getMetaData();
            // Schemas the login may use, as Metabase keeps them for a sync.
            Set<String> usable = new TreeSet<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) {
                    String schema = rs.getString("TABLE_SCHEM");
                    if (schema.startsWith("pg_") || schema.equals("information_schema")) continue;
                    if (scalarBoolean(c, "SELECT has_schema_privilege(?, 'USAGE')", schema)) usable.add(schema);
                }
            }
            check(usable.contains("audience") && !usable.contains("audience_internal") && !usable.contains("audience_ingest"),
                  user + ": schemas to sync " + usable);
            // Tables and views of those schemas, each checked for SELECT.
            Set<String> synced = new TreeSet<>();
            for (String schema : usable) {
                try (ResultSet rs = meta.getTables(null, schema, "%", SYNCED_TYPES)) {
                    while (rs.next()) {
                        String name = rs.getString("TABLE_NAME");
                        String type = rs.getString("TABLE_TYPE");
                        check("VIEW".equals(type), user + ": " + schema + "." + name + " is a " + type);
                        check(rs.getString("REMARKS") != null && !rs.getString("REMARKS").isEmpty(),
                              user + ": " + schema + "." + name + " has no remarks");
                        try (PreparedStatement ps = c.prepareStatement(
                                "SELECT TRUE AS _ FROM \"" + schema + "\".\"" + name + "\" WHERE 1 <> 1 LIMIT 0")) {
                            ps.executeQuery().close();
                            synced.add(schema + "." + name);
                        } catch (SQLException e) {
                            failures.add(user + ": may not select " + schema + "." + name + ": " + e.getMessage());
                        }
                    }
                }
            }
            Set<String> expected = new TreeSet<>();
            VIEWS.forEach(v -> expected.add("audience." + v));
            check(synced.equals(expected), user + ": synced " + synced);
            // Every column with its remarks.
            try (ResultSet rs = meta.getColumns(null, "audience", "%", "%")) {
                int columns = 0;
                while (rs.next()) {
                    if (!VIEWS.contains(rs.getString("TABLE_NAME"))) continue;
                    columns++;
                    String remarks = rs.getString("REMARKS");
                    check(remarks != null && !remarks.isEmpty(),
                          user + ": column " + rs.getString("TABLE_NAME") + "." + rs.getString("COLUMN_NAME") + " has no remarks");
                }
                check(columns >= 60, user + ": only " + columns + " columns");
            }
            // Queries as Metabase runs them: prepared, with parameters, several times.
            for (int run = 0; run < 3; run++) {
                Set<String> seen = new TreeSet<>();
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT app FROM audience.recent_viewers WHERE workspace = ? GROUP BY app")) {
                    ps.setString(1, "acme");
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) seen.add(rs.getString(1));
                    }
                }
                check(seen.equals(apps), user + ": recent_viewers apps " + seen + " (run " + run + ")");
            }
            for (String view : VIEWS) {
                StringBuilder all = new StringBuilder();
                int rows = 0;
                try (PreparedStatement ps = c.prepareStatement("SELECT * FROM audience." + view);
                     ResultSet rs = ps.executeQuery()) {
                    int n = rs.getMetaData().getColumnCount();
                    while (rs.next()) {
                        rows++;
                        for (int i = 1; i <= n; i++) all.append(rs.getString(i)).append('|');
                    }
                }
                if (apps.isEmpty()) check(rows == 0, user + ": reads " + rows + " rows of " + view);
                for (String secret : hidden) {
                    check(all.indexOf(secret) < 0, user + ": sees " + secret + " in " + view);
                }
            }
            // A function with bound parameters: a hidden app is refused like a missing one.
            if (!apps.isEmpty()) {
                try (PreparedStatement ps = c.prepareStatement("SELECT * FROM audience.top_viewers(?, ?)")) {
                    ps.setString(1, "acme");
                    ps.setString(2, "sales");
                    try (ResultSet rs = ps.executeQuery()) {
                        int n = 0;
                        while (rs.next()) n++;
                        check(n >= 3, user + ": top_viewers of sales gave " + n + " rows");
                    }
                }
            }
        }
    }

    static boolean scalarBoolean(Connection c, String sql, String arg) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            ps.setString(1, arg);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        }
    }
}
