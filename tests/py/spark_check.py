"""Reads a vscope-etl local sink with Spark (spark.read.parquet, as analysts do) and prints
facts as JSON: schemas, row counts, partition column type, and a few values.

Usage: spark_check.py SINK_DIR RAW_TABLE ROLLUP_TABLE [OTHER_SINK_DIR...]
The tables of each other sink (the same rows in another layout) are reported under
"<table>@<i>", i = 1, 2, ... in the order given. A sink partitioned by month (`month=YYYY-MM`)
has no `date` column: its days are those of `ts` (UTC), and its months are reported too.
"""
import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main():
    sink, raw, rollup = sys.argv[1:4]
    sinks = [sink] + sys.argv[4:]
    spark = (SparkSession.builder.master("local[2]").appName("vscope-etl-check")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    out = {}
    for i, (sink, table) in enumerate((s, t) for s in sinks for t in (raw, rollup)):
        key = table if i < 2 else f"{table}@{i // 2}"
        df = spark.read.parquet(f"{sink}/{table}")
        fields = {f.name: f.dataType.simpleString() for f in df.schema.fields}
        day = F.col("date").cast("string") if "date" in fields else F.to_date("ts").cast("string")
        first = (df.orderBy("metric", "datacenter", "vm", "ts").select(
            "metric", "datacenter", "vm", (F.unix_millis("ts")).alias("ts_ms"), day.alias("date"),
            F.col("tags")["env"].alias("env"),
            *(["value"] if "value" in fields else ["avg", "count"])).first().asDict())
        out[key] = {
            "types": fields,
            "rows": df.count(),
            "dates": [r[0] for r in df.select(day).distinct().orderBy(1).collect()],
            "first_row": first,
        }
        if "month" in fields:
            out[key]["months"] = [r[0] for r in df.select("month").distinct().orderBy(1).collect()]
    print("SPARK_FACTS " + json.dumps(out))
    spark.stop()


if __name__ == "__main__":
    main()
