"""PySpark Structured Streaming running the original notebook's query, for comparison.

Runs in the peers' own virtualenv (`.cache/bench-peers/venv`). The query is the notebook's:
readStream from Kafka (``startingOffsets=earliest``), value parsed with a fixed schema,
``groupBy(<key>).agg(avg(temperatura) AS avg_temp)``, output mode ``complete``, memory sink
``querySensores``. ``local[2]``, Spark UI off, ``spark.sql.shuffle.partitions=2`` (the
default 200 state-store partitions only slow a 2-core local run down, so this favours Spark).
The Kafka source, spark-sql-kafka, is resolved from Maven Central through
``spark.jars.packages`` into an Ivy cache under ``.cache/bench-peers``.

Modes
    aggregate  run the query until it has processed everything in the topic
               (``processAllAvailable``), then exit. Times: session ready, query started,
               caught up.
    alerts     the notebook's alerting design: keep the query running and poll the memory
               table every ``--poll`` seconds with
               ``SELECT sensor, ROUND(avg_temp, 2) FROM querySensores WHERE avg_temp > 75``,
               sending ONE email listing every row found (as the original did every 60 s),
               until SIGTERM.
    resolve    only start a session, so Ivy downloads the connector once, ahead of timing.
"""

from __future__ import annotations

import argparse
import json
import signal
import smtplib
import time
from email.message import EmailMessage
from typing import Any


def build_session(args: argparse.Namespace) -> Any:
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("iotmon-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.jars.packages", args.packages)
        .config("spark.jars.ivy", args.ivy_dir)
        .config("spark.local.dir", args.work_dir)
        .config("spark.sql.streaming.checkpointLocation", f"{args.work_dir}/checkpoints")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def start_query(spark: Any, args: argparse.Namespace) -> Any:
    from pyspark.sql.functions import avg, col, from_json
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("id_sensor", StringType()),
            StructField("id_equipamento", StringType()),
            StructField("sensor", StringType()),
            StructField("data_evento", StringType()),
            StructField(
                "padrao",
                StructType(
                    [
                        StructField("formato", StringType()),
                        StructField(
                            "leitura", StructType([StructField("temperatura", DoubleType())])
                        ),
                    ]
                ),
            ),
        ]
    )
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap_servers)
        .option("subscribe", args.topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    readings = stream.select(from_json(col("value").cast("string"), schema).alias("d")).select(
        col(f"d.{args.key}").alias("sensor"),
        col("d.padrao.leitura.temperatura").alias("temperatura"),
    )
    means = readings.groupBy("sensor").agg(avg("temperatura").alias("avg_temp"))
    return (
        means.writeStream.outputMode("complete").format("memory").queryName("querySensores").start()
    )


def aggregate(args: argparse.Namespace, marks: dict[str, Any]) -> None:
    spark = build_session(args)
    marks["session"] = time.monotonic()
    query = start_query(spark, args)
    marks["first"] = time.monotonic()
    marks["first_count"] = 0
    query.processAllAvailable()
    marks["last"] = time.monotonic()
    progress = query.recentProgress
    marks["count"] = sum(int(p["numInputRows"]) for p in progress)
    marks["batches"] = sum(1 for p in progress if int(p["numInputRows"]))
    marks["groups"] = spark.sql("SELECT count(*) FROM querySensores").collect()[0][0]
    query.stop()
    spark.stop()


def alerts(args: argparse.Namespace, marks: dict[str, Any]) -> None:
    from pyspark.errors import AnalysisException

    stopping = [False]

    def stop(signum: int, frame: Any) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    spark = build_session(args)
    marks["session"] = time.monotonic()
    query = start_query(spark, args)
    marks["first"] = time.monotonic()
    emails = 0
    while not stopping[0]:
        try:
            rows = spark.sql(
                "SELECT sensor, ROUND(avg_temp, 2) AS avg_temp FROM querySensores "
                "WHERE avg_temp > 75"
            ).collect()
        except AnalysisException:
            rows = []  # the memory table appears with the first micro-batch
        if rows:
            send_email(args, [(str(r["sensor"]), float(r["avg_temp"])) for r in rows])
            emails += 1
        deadline = time.monotonic() + args.poll
        while not stopping[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    marks["emails"] = emails
    query.stop()
    spark.stop()


def send_email(args: argparse.Namespace, rows: list[tuple[str, float]]) -> None:
    # The original's message, sent over plain SMTP to the bench's local server instead of
    # Gmail over SSL.
    message = EmailMessage()
    message["Subject"] = f"Atenção! {len(rows)} sensores com possíveis problemas."
    message["From"] = "spark@localhost"
    message["To"] = args.mail_to
    lines = ["Os seguintes sensores apresentam temperatura acima de 75ºC.", ""]
    lines += [f"{sensor} - Temperatura Média: {value:.2f}ºC" for sensor, value in rows]
    lines += ["", "Departamento de Dados"]
    message.set_content("\n".join(lines))
    with smtplib.SMTP(args.smtp_host, args.smtp_port, timeout=30) as smtp:
        smtp.send_message(message)


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("aggregate", "alerts", "resolve"), default="aggregate")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="sensoresInfos")
    parser.add_argument("--key", default="sensor", help="column to group by (notebook: sensor)")
    parser.add_argument("--packages", required=True, help="spark-sql-kafka Maven coordinate")
    parser.add_argument("--ivy-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--mail-to", default="ops@example.com")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    marks: dict[str, Any] = {"started": started}
    if args.mode == "aggregate":
        aggregate(args, marks)
    elif args.mode == "alerts":
        alerts(args, marks)
    else:
        build_session(args).stop()
    marks["exiting"] = time.monotonic()
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(marks, out)


if __name__ == "__main__":
    main()
