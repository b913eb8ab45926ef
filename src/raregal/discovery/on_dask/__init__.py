"""The search on a Dask cluster (``raregal search --dask``): see :mod:`raregal.discovery.on_dask.search`."""
