// pm2 process file for the miner:  pm2 start deploy/ecosystem.config.js  (from the repository root)
// Edit WALLET_* / NETUID / NETWORK / AXON_PORT below or export them before `pm2 start`.
// pm2 sends SIGINT on stop/restart; the miner drains (miner.drain_s) and exits 0, so kill_timeout
// must be longer than drain_s plus a second.
const env = process.env;
const args = [
  "serve",
  "--config", env.ROADWORK_CONFIG || "configs/cpu.yaml",
  "--wallet.name", env.WALLET_NAME || "miner",
  "--wallet.hotkey", env.WALLET_HOTKEY || "default",
  "--netuid", env.NETUID || "72",
  "--subtensor.network", env.NETWORK || "finney",
  "--axon.port", env.AXON_PORT || "8091",
];

module.exports = {
  apps: [
    {
      name: "roadwork-miner",
      script: ".venv/bin/roadwork",
      args: args,
      interpreter: "none",
      cwd: __dirname + "/..",
      autorestart: true,
      max_restarts: 50,
      min_uptime: "60s",          // a crash during model loading is not a successful start
      restart_delay: 5000,
      kill_timeout: 15000,        // > miner.drain_s (10 s) + 1 s
      max_memory_restart: "24G",
      time: true,                 // timestamps in pm2 logs
      env: {
        HF_HUB_OFFLINE: "1",
        YOLO_OFFLINE: "1",
        PYTHONUNBUFFERED: "1",
      },
    },
  ],
};
