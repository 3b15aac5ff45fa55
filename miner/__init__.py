"""The SN72 miner: protocol, safe decode, axon service, blacklist/priority and the local simulator.

Importing this package is cheap: bittensor is imported only by `miner.protocol`, `miner.axon`,
`miner.chain` and `miner.simulate`, which the `serve` and `simulate` commands load on demand.
"""
