"""`spasm-cds evaluate FOLDER` on a population: a folder of Bundles or a Bulk FHIR NDJSON export -> one row per
patient and hook (patients.py), run on every core or on a Dask cluster (runner.py, ndjson.py), written as CSV,
Parquet, JSON figures and an HTML report (rows.py, html.py). Nothing on the serving path imports this package."""
