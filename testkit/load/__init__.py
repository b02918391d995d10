"""Driving a running service with load: statistics (``stats``), a lean HTTP client (``client``)
and closed- and open-loop drivers (``drivers``), shared by the load benches and the suite."""
