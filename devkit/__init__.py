"""Development kit: private brokers, configs and whole booths for tests, demo and benchmarks.

Never imported by the product (`booth_ctl`, `drivers`, `sim_hw`).
"""
