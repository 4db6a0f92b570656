"""Ray and where results live: connect (an embedded Ray on loopback, or an existing cluster),
storage (a local folder, an NFS path or s3://, and the sweep's own record in it), submit (a sweep
as a Ray job through the Jobs API)."""
