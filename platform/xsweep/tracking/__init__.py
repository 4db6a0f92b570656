"""MLflow: everything a sweep records, and the queries that read it back. Imports MLflow, never torch.

runs (the sweep's parent run and its trials' child runs, tags, params), callback (the Tune callback
that turns trial reports into MLflow writes), delivery (background, in order, retried), store (which
tracking store, whether it is reachable, creating it safely), query (what report, reproduce, status
and the summary read), trials (the trial `xsweep reproduce` re-runs, as MLflow holds it), reproduction
(the run that records a reproduction), uri (URIs with passwords).
"""
