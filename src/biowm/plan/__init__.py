"""Planning over imagined futures: batched MPC (CEM, MPPI) with a safety shield."""
