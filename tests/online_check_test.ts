/**
 * `sentinel-tunnel --check --online` (src/ops/online_check.ts) against real
 * redis-server and Sentinel processes, and against a Sentinel that hangs: one
 * line per problem, and the exit code of its class.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/mod.ts";
import { checkOnline, ONLINE_CHECK_EXIT, onlineCheckDeadlineMs } from "../src/ops/online_check.ts";
import { freePort, startDeployment } from "./_deployment.ts";
import { NO_REPLY, startFakeRedis } from "./_fake_redis.ts";
import { runCli, writeConfig } from "./_tunnel.ts";

const processes = { sanitizeOps: false, sanitizeResources: false };

/** A finished `--check --online` run: its exit code, its lines, how long it took. */
interface OnlineRun {
  code: number;
  lines: string[];
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `sentinel-tunnel --check --online` on `config` as a subprocess. */
async function runOnline(config: unknown, env: Record<string, string> = {}): Promise<OnlineRun> {
  const path = await writeConfig(config);
  try {
    const started = performance.now();
    const { code, stdout, stderr } = await runCli(["--check", "--online", path], env);
    const ms = performance.now() - started;
    return { code, stdout, stderr, ms, lines: stdout.split("\n").filter((l) => l !== "") };
  } finally {
    await Deno.remove(path);
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test(
  "checkOnline() confirms the master and the replicas, lists the names the Sentinels know, and reports a replica cut off",
  processes,
  async (t) => {
    await using deployment = await startDeployment({ masterName: "good", replicas: 1 });
    const sentinels = deployment.sentinels.map((s) => s.address);
    const master = deployment.nodes[0]!.address;
    const replica = deployment.nodes[1]!.address;
    const [writes, reads, unknown] = [freePort(), freePort(), freePort()];
    const named = `confirmed by ROLE, named by 3 of 3 Sentinels at config-epoch 0`;

    await t.step(
      "all good: exit 0, a line per entry naming the master and the replica",
      async () => {
        const run = await runOnline({
          sentinels,
          databases: [{ name: "good", port: writes }, {
            name: "good",
            port: reads,
            role: "replica",
          }],
        });
        assert.equal(run.code, ONLINE_CHECK_EXIT.ok, run.stdout + run.stderr);
        assert.equal(run.stderr, "");
        assert.equal(run.lines.length, 2, run.stdout);
        assert.equal(run.lines[0], `good (port ${writes}): master ${master}, ${named}`);
        assert.match(
          run.lines[1]!,
          new RegExp(
            `^good \\(port ${reads}, replicas\\): 1 of 1 replicas usable \\(maxLagBytes 1048576\\): ${
              escape(replica)
            } \\(\\d+ bytes? behind\\); master ${escape(master)}, ${escape(named)}$`,
          ),
        );
      },
    );

    await t.step(
      "an unknown name: exit 4, and the line lists the names the Sentinels know",
      async () => {
        const run = await runOnline({
          sentinels,
          databases: [{ name: "good", port: writes }, { name: "shopp", port: unknown }],
        });
        assert.equal(run.code, ONLINE_CHECK_EXIT.unknownName, run.stdout + run.stderr);
        assert.deepEqual(run.lines, [
          `good (port ${writes}): master ${master}, ${named}`,
          `shopp (port ${unknown}): no Sentinel knows master "shopp"; the Sentinels know: good`,
        ]);
      },
    );

    await t.step("a replica whose link is cut: exit 6, and the line says why", async () => {
      await deployment.cli(deployment.nodes[1]!, "REPLICAOF", "127.0.0.1", String(freePort()));
      const run = await runOnline({
        sentinels,
        databases: [{ name: "good", port: writes }, {
          name: "good",
          port: reads,
          role: "replica",
          whenNoReplica: "master",
        }],
      });
      assert.equal(run.code, ONLINE_CHECK_EXIT.replicas, run.stdout + run.stderr);
      assert.equal(run.lines[0], `good (port ${writes}): master ${master}, ${named}`);
      assert.match(
        run.lines[1]!,
        new RegExp(
          `^good \\(port ${reads}, replicas\\): no usable replica of master ${
            escape(master)
          }: replica ${
            escape(replica)
          }: .+; its clients go to the master \\(whenNoReplica "master"\\)$`,
        ),
      );
    });
  },
);

Deno.test(
  "checkOnline() names the missing or wrong password, Sentinel side and master side, and prints none",
  processes,
  async (t) => {
    const password = "node-secret-pw";
    const sentinelPassword = "sentinel-secret-pw";
    await using deployment = await startDeployment({
      masterName: "secure",
      replicas: 0,
      sentinels: 1,
      password,
      sentinelPassword,
    });
    const sentinel = deployment.sentinels[0]!.address;
    const master = deployment.nodes[0]!.address;
    const port = freePort();
    const env = {
      ST_SENTINEL_PW: sentinelPassword,
      ST_MASTER_PW: password,
      ST_WRONG_PW: "not-the-password",
    };
    const config = (sentinelAuth: string | undefined, masterAuth: string | undefined) => ({
      sentinels: [sentinel],
      ...(sentinelAuth ? { sentinelAuth: { passwordEnv: sentinelAuth } } : {}),
      ...(masterAuth ? { masterAuth: { passwordEnv: masterAuth } } : {}),
      databases: [{ name: "secure", port }],
    });
    const online = async (sentinelAuth: string | undefined, masterAuth: string | undefined) => {
      const run = await runOnline(config(sentinelAuth, masterAuth), env);
      for (const secret of [password, sentinelPassword]) {
        assert.ok(
          !run.stdout.includes(secret) && !run.stderr.includes(secret),
          "a password leaked",
        );
      }
      return run;
    };

    await t.step("the Sentinel password missing: exit 3, set sentinelAuth", async () => {
      const run = await online(undefined, "ST_MASTER_PW");
      assert.equal(run.code, ONLINE_CHECK_EXIT.sentinel, run.stdout + run.stderr);
      assert.equal(
        run.lines[0],
        `${sentinel}: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass)`,
      );
      // The entry's line is the running tunnel's own words, with the same hint.
      assert.equal(
        run.lines[1],
        `secure (port ${port}): no confirmed master: no Sentinel reachable (${sentinel}: SENTINEL MASTER failed: NOAUTH Authentication required; set sentinelAuth (the Sentinels' requirepass))`,
      );
    });

    await t.step("the Sentinel password wrong: exit 3, check sentinelAuth", async () => {
      const run = await online("ST_WRONG_PW", "ST_MASTER_PW");
      assert.equal(run.code, ONLINE_CHECK_EXIT.sentinel, run.stdout + run.stderr);
      assert.equal(
        run.lines[0],
        `${sentinel}: AUTH failed: WRONGPASS invalid username-password pair or user is disabled; check sentinelAuth`,
      );
      assert.match(
        run.lines[1]!,
        /no confirmed master: no Sentinel reachable \(.*WRONGPASS.*; check sentinelAuth\)$/,
      );
    });

    await t.step("the master password missing: exit 5, set masterAuth", async () => {
      const run = await online("ST_SENTINEL_PW", undefined);
      assert.equal(run.code, ONLINE_CHECK_EXIT.master, run.stdout + run.stderr);
      assert.deepEqual(run.lines, [
        `secure (port ${port}): no confirmed master: ROLE on ${master} answered NOAUTH Authentication required.; set masterAuth in the config so the tunnel can check ROLE`,
      ]);
    });

    await t.step("the master password wrong: exit 5, check masterAuth", async () => {
      const run = await online("ST_SENTINEL_PW", "ST_WRONG_PW");
      assert.equal(run.code, ONLINE_CHECK_EXIT.master, run.stdout + run.stderr);
      assert.equal(run.lines.length, 1, run.stdout);
      assert.match(
        run.lines[0]!,
        new RegExp(
          `^secure \\(port ${port}\\): no confirmed master: ROLE check failed: ${
            escape(master)
          }: AUTH failed: WRONGPASS .*; check the masterAuth credentials and the ACL user's permissions$`,
        ),
      );
    });

    await t.step("both passwords right: exit 0", async () => {
      const run = await online("ST_SENTINEL_PW", "ST_MASTER_PW");
      assert.equal(run.code, ONLINE_CHECK_EXIT.ok, run.stdout + run.stderr);
      assert.deepEqual(run.lines, [
        `secure (port ${port}): master ${master}, confirmed by ROLE, named by 1 of 1 Sentinels at config-epoch 0`,
      ]);
    });

    await t.step("a read port of a master with no replica: exit 6", async () => {
      const reads = freePort();
      const base = config("ST_SENTINEL_PW", "ST_MASTER_PW");
      const run = await runOnline({
        ...base,
        databases: [{ name: "secure", port }, { name: "secure", port: reads, role: "replica" }],
      }, env);
      assert.equal(run.code, ONLINE_CHECK_EXIT.replicas, run.stdout + run.stderr);
      assert.equal(run.lines.length, 2, run.stdout);
      assert.equal(
        run.lines[1],
        `secure (port ${reads}, replicas): no usable replica of master ${master}: no Sentinel lists a replica of master ${master}; its clients are refused (whenNoReplica "reject")`,
      );
    });
  },
);

Deno.test(
  "checkOnline() with no Sentinel listening exits 3, which wins over the master's 5",
  processes,
  async () => {
    const sentinel = `127.0.0.1:${freePort()}`;
    const port = freePort();
    const run = await runOnline({ sentinels: [sentinel], databases: [{ name: "mymaster", port }] });
    assert.equal(run.code, ONLINE_CHECK_EXIT.sentinel, run.stdout + run.stderr);
    assert.equal(run.lines.length, 2, run.stdout);
    assert.match(run.lines[0]!, new RegExp(`^${escape(sentinel)}: .*connection refused`));
    assert.match(
      run.lines[1]!,
      new RegExp(
        `^mymaster \\(port ${port}\\): no confirmed master: no Sentinel reachable \\(${
          escape(sentinel)
        }: .*connection refused.*\\)$`,
      ),
    );
  },
);

Deno.test(
  "checkOnline() gives up on a Sentinel that accepts and never answers, within the deadline",
  processes,
  async () => {
    await using hung = await startFakeRedis({ handle: () => NO_REPLY });
    const port = freePort();
    const config = {
      sentinels: [hung.address],
      timeouts: { sentinelConnectMs: 200, sentinelReplyMs: 300 },
      databases: [{ name: "mymaster", port }],
    };
    const deadlineMs = onlineCheckDeadlineMs(parseConfig(JSON.stringify(config), "test.json"));
    const run = await runOnline(config);
    assert.equal(run.code, ONLINE_CHECK_EXIT.sentinel, run.stdout + run.stderr);
    assert.deepEqual(run.lines, [
      `${hung.address}: no reply within 300 ms`,
      `mymaster (port ${port}): no confirmed master: no Sentinel reachable (${hung.address}: no reply within 300 ms)`,
    ]);
    // The process's own start is in there too.
    assert.ok(run.ms < deadlineMs, `took ${run.ms} ms, over the deadline of ${deadlineMs} ms`);
  },
);

Deno.test(
  "checkOnline() ends at its overall deadline even when the config's own deadlines are long",
  processes,
  async () => {
    await using hung = await startFakeRedis({ handle: () => NO_REPLY });
    const config = parseConfig(
      JSON.stringify({
        sentinels: [hung.address],
        sentinelAuth: { password: "never-printed" },
        timeouts: { sentinelConnectMs: 60_000, sentinelReplyMs: 60_000 },
        databases: [{ name: "mymaster", port: 16380 }],
      }),
      "test.json",
    );
    const started = performance.now();
    const report = await checkOnline(config, { deadlineMs: 1000 });
    const ms = performance.now() - started;
    assert.ok(ms < 2000, `took ${ms} ms`);
    assert.equal(report.code, ONLINE_CHECK_EXIT.sentinel);
    assert.deepEqual(report.lines, [
      {
        text: `${hung.address}: no answer within the check's deadline of 1000 ms`,
        code: ONLINE_CHECK_EXIT.sentinel,
      },
      {
        text:
          `mymaster (port 16380): no confirmed master: no answer within the check's deadline of 1000 ms`,
        code: ONLINE_CHECK_EXIT.master,
      },
    ]);
    assert.ok(!JSON.stringify(report).includes("never-printed"));
  },
);

Deno.test("onlineCheckDeadlineMs() is 14.5 s with the default deadlines and three Sentinels", () => {
  const config = parseConfig(
    JSON.stringify({
      sentinels: ["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"],
      databases: [{ name: "mymaster", port: 16380 }],
    }),
    "test.json",
  );
  assert.equal(onlineCheckDeadlineMs(config), 14_500);
});
