"""The ``[[outputs.elasticsearch]]`` options. Defaults live here and nowhere else."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import msgspec
from airisd_plugins.outputs.elasticsearch.retention import datable

from airisd.pipeline import OutputConfig

_INDEX_PREFIX = re.compile(r"[a-z0-9][a-z0-9._+-]*")  # Elasticsearch: lower case, no \ / * ? " < > | space , #


class ElasticsearchConfig(OutputConfig):
    ## Elasticsearch nodes, as URLs (http or https).
    hosts: list[str] = msgspec.field(default_factory=lambda: ["http://localhost:9200"])
    ## Basic authentication (the seed's ELASTICSEARCH_USERNAME / ELASTICSEARCH_PASSWORD); empty: none.
    username: str = ""
    password: str = ""
    ## An API key (the base64 "id:key" form Elasticsearch returns as "encoded"); empty: none.
    api_key: str = ""
    ## TLS: verify the server's certificate, against this CA file when given.
    verify_certs: bool = True
    ca_certs: str = ""
    request_timeout_secs: float = 30.0
    ## Records go to <index_prefix><UTC date of the record>, e.g. logs-2024.01.15.
    index_prefix: str = "logs-"
    ## strftime format of the date part: "%Y.%m.%d" daily (the default), "%Y.%m" monthly.
    index_date_format: str = "%Y.%m.%d"
    ## The index template installed (or updated) at start for <index_prefix>*.
    template_name: str = "airisd-logs"
    install_template: bool = True
    number_of_shards: int = 1
    number_of_replicas: int = 1
    ## A document's _id is a hash of its content, so that a retried bulk never indexes a record twice.
    ## false: Elasticsearch makes the ids (faster, but a retry after a lost response may duplicate).
    id_from_content: bool = True
    ## A bulk request is split so that none is larger than this.
    max_bulk_bytes: int = 10 << 20
    ## Documents Elasticsearch refuses for good (mapping conflicts) are appended to JSON-lines files
    ## here; empty: <data_dir>/dead-letter.
    dead_letter_dir: str = ""
    ## Delete the indices whose whole day (period of index_date_format) ended more than this many days
    ## ago; 0 keeps every index (deletion left to ILM or the operator).
    retention_days: int = 0
    ## How often old indices are looked for (the first time at start).
    retention_check_interval_secs: float = 3600.0

    def validate(self) -> None:
        super().validate()
        if not self.hosts:
            raise ValueError("hosts must name at least one Elasticsearch URL, got []")
        for h in self.hosts:
            parts = urlsplit(h)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"hosts: {h!r} is not an http:// or https:// URL")
        if self.api_key and (self.username or self.password):
            raise ValueError("api_key and username/password are both set: choose one")
        if self.password and not self.username:
            raise ValueError("password is set but username is empty")
        if not _INDEX_PREFIX.fullmatch(self.index_prefix):
            raise ValueError(f"index_prefix {self.index_prefix!r} must be lower case letters, digits and ._+- "
                             "(Elasticsearch index names), starting with a letter or digit")
        try:
            sample = time.strftime(self.index_date_format, time.gmtime(0))
        except ValueError:
            sample = ""
        if not sample or not re.fullmatch(r"[0-9._+-]+", sample) or "%" not in self.index_date_format:
            raise ValueError(f"index_date_format {self.index_date_format!r} must be a strftime date format "
                             "of digits and ._+- (e.g. '%Y.%m.%d')")
        if self.retention_days < 0:
            raise ValueError(f"retention_days must be >= 0 (0 keeps every index, N deletes indices older than "
                             f"N days), got {self.retention_days}")
        if self.retention_days and not datable(self.index_date_format):
            raise ValueError(f"retention_days = {self.retention_days} needs an index_date_format whose names each "
                             f"cover one period with its year ('%Y.%m.%d' daily, '%Y.%m' monthly, '%Y' yearly, "
                             f"'%Y.%m.%d.%H' hourly, '%Y.%j'), got {self.index_date_format!r}: change it, "
                             "or set retention_days = 0 and let ILM delete old indices")
        if self.retention_check_interval_secs <= 0:
            raise ValueError(f"retention_check_interval_secs must be positive, got "
                             f"{self.retention_check_interval_secs}")
        if not self.template_name:
            raise ValueError("template_name must not be empty")
        if self.number_of_shards < 1 or self.number_of_replicas < 0:
            raise ValueError(f"number_of_shards must be >= 1 and number_of_replicas >= 0, got "
                             f"{self.number_of_shards} and {self.number_of_replicas}")
        if self.request_timeout_secs <= 0:
            raise ValueError(f"request_timeout_secs must be positive, got {self.request_timeout_secs}")
        if self.max_bulk_bytes < 1024:
            raise ValueError(f"max_bulk_bytes must be at least 1024, got {self.max_bulk_bytes}")
