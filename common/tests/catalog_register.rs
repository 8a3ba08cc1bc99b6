//! Registering existing Parquet files and reading them back with iceberg-rust.
#![allow(clippy::unwrap_used)]

mod catalog_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray};
use catalog_support::{Row, batch_millis, micros, row, stores, write_parquet, write_rows};
use earthcatalog_common::catalog::{
    Catalog, DataFileError, RegisterError, TableSettings, data_files, partition_totals, snapshots,
};
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;
use futures::TryStreamExt;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;
use iceberg::table::Table;

const CELL_A: &str = "8a1fb46622dffff";
const CELL_B: &str = "8a1fb46622d7fff";

struct Fixture {
    _tmp: tempfile::TempDir,
    stores: Arc<Stores>,
    catalog: Catalog,
    table: Table,
    data: Location,
}

async fn fixture(warehouse: Option<&str>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let stores = stores();
    let wh = match warehouse {
        Some(w) => Location::parse(w).unwrap(),
        None => Location::local(tmp.path().join("warehouse")).unwrap(),
    };
    let catalog = Catalog::open(&tmp.path().join("catalog.db"), &wh, stores.clone()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(10)).await.unwrap();
    Fixture { _tmp: tmp, stores, catalog, table, data: wh }
}

async fn ids(table: &Table, filter: Option<Predicate>) -> BTreeSet<String> {
    let mut scan = table.scan().select(["id"]);
    if let Some(f) = filter {
        scan = scan.with_filter(f);
    }
    let batches: Vec<RecordBatch> =
        scan.build().unwrap().to_arrow().await.unwrap().try_collect().await.unwrap();
    let mut out = BTreeSet::new();
    for b in batches {
        let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..col.len()).map(|i| col.value(i).to_string()));
    }
    out
}

async fn planned(table: &Table, filter: Predicate) -> usize {
    let tasks: Vec<_> = table
        .scan()
        .with_filter(filter)
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    tasks.len()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Three files: cell A 2019, cell A 2020, cell B 2020.
async fn three_files(f: &Fixture) -> Vec<Location> {
    vec![
        write_rows(
            &f.stores,
            &f.data,
            "a19",
            &[
                row("a19-1", CELL_A, "2019-03-01T00:00:00Z"),
                row("a19-2", CELL_A, "2019-12-31T23:59:59Z"),
            ],
        )
        .await,
        write_rows(&f.stores, &f.data, "a20", &[row("a20-1", CELL_A, "2020-06-01T12:00:00Z")])
            .await,
        write_rows(
            &f.stores,
            &f.data,
            "b20",
            &[
                row("b20-1", CELL_B, "2020-01-01T00:00:00Z"),
                row("b20-2", CELL_B, "2020-02-01T00:00:00Z"),
                row("b20-3", CELL_B, "2020-03-01T00:00:00Z"),
            ],
        )
        .await,
    ]
}

async fn registers_one_snapshot_and_scans_back_exact_rows(warehouse: Option<&str>) {
    let f = fixture(warehouse).await;
    let files = three_files(&f).await;
    let (table, summary) = f.catalog.register(&f.table, &files).await.unwrap();
    assert_eq!(summary.files, 3);
    assert_eq!(summary.records, 6);

    let snaps = snapshots(&table);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].operation, "append");
    assert_eq!(Some(snaps[0].id), summary.snapshot_id);
    assert_eq!(snaps[0].summary.get("added-data-files").map(String::as_str), Some("3"));
    assert_eq!(snaps[0].summary.get("added-records").map(String::as_str), Some("6"));

    let all = ids(&table, None).await;
    assert_eq!(all, set(&["a19-1", "a19-2", "a20-1", "b20-1", "b20-2", "b20-3"]));

    let listed = data_files(&table).await.unwrap();
    let uris: Vec<String> = files.iter().map(Location::uri).collect();
    let mut sorted = uris.clone();
    sorted.sort();
    assert_eq!(listed.iter().map(|d| d.path.clone()).collect::<Vec<_>>(), sorted);
    let totals = partition_totals(&listed);
    let got: Vec<(Option<String>, Option<i32>, u64, u64)> =
        totals.iter().map(|t| (t.grid_partition.clone(), t.year, t.rows, t.files)).collect();
    assert_eq!(
        got,
        vec![
            (Some(CELL_B.into()), Some(2020), 3, 1),
            (Some(CELL_A.into()), Some(2019), 2, 1),
            (Some(CELL_A.into()), Some(2020), 1, 1),
        ]
    );
}

#[tokio::test]
async fn files_in_a_local_warehouse_register_in_one_snapshot_and_scan_back_exactly() {
    registers_one_snapshot_and_scans_back_exact_rows(None).await;
}

#[tokio::test]
async fn files_in_a_memory_warehouse_register_in_one_snapshot_and_scan_back_exactly() {
    registers_one_snapshot_and_scans_back_exact_rows(Some("memory://reg/warehouse")).await;
}

#[tokio::test]
async fn scans_prune_files_by_cell_and_by_datetime() {
    let f = fixture(None).await;
    let files = three_files(&f).await;
    let (table, _) = f.catalog.register(&f.table, &files).await.unwrap();
    let cell_a = Reference::new("grid_partition").equal_to(Datum::string(CELL_A));
    assert_eq!(planned(&table, cell_a.clone()).await, 2);
    assert_eq!(ids(&table, Some(cell_a.clone())).await, set(&["a19-1", "a19-2", "a20-1"]));
    let in_2020 = Reference::new("datetime")
        .greater_than_or_equal_to(Datum::timestamptz_micros(micros("2020-01-01T00:00:00Z")));
    assert_eq!(planned(&table, in_2020.clone()).await, 2);
    let both = cell_a.and(in_2020);
    assert_eq!(planned(&table, both.clone()).await, 1);
    assert_eq!(ids(&table, Some(both)).await, set(&["a20-1"]));
    // File-level bounds prune inside a year too: nothing in cell B before February's end.
    let early_b = Reference::new("grid_partition").equal_to(Datum::string(CELL_B)).and(
        Reference::new("datetime")
            .less_than(Datum::timestamptz_micros(micros("2019-06-01T00:00:00Z"))),
    );
    assert_eq!(planned(&table, early_b).await, 0);
}

#[tokio::test]
async fn manifests_carry_counts_and_bounds_from_the_footer_including_nested_columns() {
    let f = fixture(None).await;
    let file = write_rows(
        &f.stores,
        &f.data,
        "b",
        &[
            row("x2", CELL_B, "2021-04-01T00:00:00Z"),
            row("x1", CELL_B, "2021-01-01T00:00:00.000001Z"),
        ],
    )
    .await;
    let table = f.table.clone();
    let df = f.catalog.describe_file(&table, &file).await.unwrap();
    assert_eq!(df.record_count(), 2);
    let size = std::fs::metadata(file.as_local_path().unwrap()).unwrap().len();
    assert_eq!(df.file_size_in_bytes(), size);
    assert_eq!(df.lower_bounds().get(&1), Some(&Datum::string("x1")));
    assert_eq!(df.upper_bounds().get(&1), Some(&Datum::string("x2")));
    assert_eq!(
        df.lower_bounds().get(&4),
        Some(&Datum::timestamptz_micros(micros("2021-01-01T00:00:00.000001Z")))
    );
    assert_eq!(
        df.upper_bounds().get(&4),
        Some(&Datum::timestamptz_micros(micros("2021-04-01T00:00:00Z")))
    );
    // geometry_bbox.xmax (id 34) holds row index + 1.0.
    assert_eq!(df.lower_bounds().get(&34), Some(&Datum::double(1.0)));
    assert_eq!(df.upper_bounds().get(&34), Some(&Datum::double(2.0)));
    assert_eq!(df.value_counts().get(&5), Some(&2));
    assert_eq!(df.null_value_counts().get(&5), Some(&2), "platform is null in both rows");
    assert_eq!(df.null_value_counts().get(&1), Some(&0));
    assert!(df.lower_bounds().get(&5).is_none());
    assert!(df.column_sizes().get(&1).is_some_and(|s| *s > 0));
    let partition: Vec<_> = df.partition().fields().to_vec();
    assert_eq!(
        partition,
        vec![
            Some(iceberg::spec::Literal::string(CELL_B)),
            Some(iceberg::spec::Literal::int(2021 - 1970)),
        ]
    );
}

#[tokio::test]
async fn millisecond_timestamps_are_scaled_to_microsecond_bounds() {
    let f = fixture(None).await;
    let rows =
        [row("m1", CELL_A, "2018-07-04T10:00:00.123Z"), row("m2", CELL_A, "2018-09-01T00:00:00Z")];
    let loc = f.data.join("ms/m.parquet");
    write_parquet(&f.stores, &loc, &batch_millis(&rows)).await;
    let df = f.catalog.describe_file(&f.table, &loc).await.unwrap();
    assert_eq!(
        df.lower_bounds().get(&4),
        Some(&Datum::timestamptz_micros(micros("2018-07-04T10:00:00.123Z")))
    );
    assert_eq!(
        df.upper_bounds().get(&4),
        Some(&Datum::timestamptz_micros(micros("2018-09-01T00:00:00Z")))
    );
    assert_eq!(df.partition().fields()[1], Some(iceberg::spec::Literal::int(2018 - 1970)));
}

#[tokio::test]
async fn items_without_datetime_register_in_the_null_year_partition() {
    let f = fixture(None).await;
    let rows = [
        Row { id: "n1".into(), cell: Some(CELL_A.into()), micros: None },
        Row { id: "n2".into(), cell: Some(CELL_A.into()), micros: None },
    ];
    let file = write_rows(&f.stores, &f.data, "n", &rows).await;
    let (table, _) = f.catalog.register(&f.table, &[file]).await.unwrap();
    let listed = data_files(&table).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].grid_partition.as_deref(), Some(CELL_A));
    assert_eq!(listed[0].year, None);
    assert_eq!(ids(&table, None).await, set(&["n1", "n2"]));
}

#[tokio::test]
async fn a_file_spanning_two_cells_is_refused_by_name_and_nothing_is_committed() {
    let f = fixture(None).await;
    let good =
        write_rows(&f.stores, &f.data, "good", &[row("g", CELL_A, "2020-01-01T00:00:00Z")]).await;
    let bad = write_rows(
        &f.stores,
        &f.data,
        "mixed",
        &[row("m1", CELL_A, "2020-01-01T00:00:00Z"), row("m2", CELL_B, "2020-01-02T00:00:00Z")],
    )
    .await;
    let err = f.catalog.register(&f.table, &[good, bad.clone()]).await.unwrap_err();
    assert!(
        matches!(err, RegisterError::DataFile(DataFileError::SpansPartitions { .. })),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&bad.uri()), "{msg}");
    assert!(msg.contains(&format!("grid_partition has '{CELL_B}' and '{CELL_A}'")), "{msg}");
    let table = f.catalog.load_table().await.unwrap().unwrap();
    assert!(table.metadata().snapshots().next().is_none());
}

#[tokio::test]
async fn a_file_spanning_two_years_is_refused_naming_both_years() {
    let f = fixture(None).await;
    let bad = write_rows(
        &f.stores,
        &f.data,
        "years",
        &[row("y1", CELL_A, "2019-12-31T23:59:59Z"), row("y2", CELL_A, "2020-01-01T00:00:00Z")],
    )
    .await;
    let err = f.catalog.register(&f.table, std::slice::from_ref(&bad)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&bad.uri()), "{msg}");
    assert!(msg.contains("datetime has year 2019 and year 2020"), "{msg}");
}

#[tokio::test]
async fn a_file_mixing_dated_and_undated_items_is_refused() {
    let f = fixture(None).await;
    let bad = write_rows(
        &f.stores,
        &f.data,
        "half",
        &[
            row("d", CELL_A, "2019-12-31T23:59:59Z"),
            Row { id: "u".into(), cell: Some(CELL_A.into()), micros: None },
        ],
    )
    .await;
    let err = f.catalog.register(&f.table, std::slice::from_ref(&bad)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&bad.uri()) && msg.contains("datetime is null in 1 of 2 rows"), "{msg}");
}

/// Writes `rows` as one file of `CELL_A` with the writer settings `props` (statistics options).
async fn write_with_stats(
    f: &Fixture,
    name: &str,
    rows: &[Row],
    props: parquet::file::properties::WriterProperties,
) -> Location {
    let batch = catalog_support::batch(rows);
    let mut buf = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let loc = f.data.join(&format!("grid_partition={CELL_A}/{name}.parquet"));
    let o = f.stores.resolve(&loc).unwrap();
    object_store::ObjectStoreExt::put(o.store.as_ref(), &o.path, buf.into()).await.unwrap();
    loc
}

#[tokio::test]
async fn a_file_whose_cell_statistics_are_truncated_or_missing_is_refused_by_name() {
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let f = fixture(None).await;
    let rows =
        [row("t1", CELL_A, "2020-01-01T00:00:00Z"), row("t2", CELL_A, "2020-02-01T00:00:00Z")];
    let truncated = write_with_stats(
        &f,
        "truncated",
        &rows,
        WriterProperties::builder().set_statistics_truncate_length(Some(8)).build(),
    )
    .await;
    let err = f.catalog.register(&f.table, std::slice::from_ref(&truncated)).await.unwrap_err();
    assert!(
        matches!(err, RegisterError::DataFile(DataFileError::InexactStatistics { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "file {} has inexact min/max statistics for 'grid_partition' (truncated, or not marked exact by its writer), so its partition is unknown; rewrite it with full statistics",
            truncated.uri()
        )
    );

    let missing = write_with_stats(
        &f,
        "missing",
        &rows,
        WriterProperties::builder()
            .set_column_statistics_enabled("grid_partition".into(), EnabledStatistics::None)
            .build(),
    )
    .await;
    let err = f.catalog.register(&f.table, std::slice::from_ref(&missing)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "file {} has no min/max statistics for 'grid_partition', so its partition is unknown",
            missing.uri()
        )
    );
    let table = f.catalog.load_table().await.unwrap().unwrap();
    assert!(table.metadata().snapshots().next().is_none(), "nothing was committed");

    // The same rows with full statistics register.
    let full = write_with_stats(&f, "full", &rows, WriterProperties::builder().build()).await;
    let (_, summary) = f.catalog.register(&f.table, &[full]).await.unwrap();
    assert_eq!(summary.records, 2);
}

#[tokio::test]
async fn registering_a_path_twice_is_refused_with_the_path() {
    let f = fixture(None).await;
    let a = write_rows(&f.stores, &f.data, "a", &[row("a", CELL_A, "2020-01-01T00:00:00Z")]).await;
    let b = write_rows(&f.stores, &f.data, "b", &[row("b", CELL_B, "2020-01-01T00:00:00Z")]).await;
    let (table, _) = f.catalog.register(&f.table, std::slice::from_ref(&a)).await.unwrap();
    let err = f.catalog.register(&table, &[b.clone(), a.clone()]).await.unwrap_err();
    match &err {
        RegisterError::AlreadyRegistered { paths } => assert_eq!(paths, &vec![a.uri()]),
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    let err = f.catalog.register(&table, &[b.clone(), b.clone()]).await.unwrap_err();
    assert!(
        matches!(err, RegisterError::AlreadyRegistered { ref paths } if paths == &vec![b.uri()])
    );
    let table = f.catalog.load_table().await.unwrap().unwrap();
    assert_eq!(table.metadata().snapshots().count(), 1);
    assert_eq!(ids(&table, None).await, set(&["a"]));
}

#[tokio::test]
async fn a_missing_file_is_refused_naming_it() {
    let f = fixture(None).await;
    let ghost = f.data.join("nowhere/ghost.parquet");
    let err = f.catalog.register(&f.table, std::slice::from_ref(&ghost)).await.unwrap_err();
    assert!(matches!(err, RegisterError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(&ghost.uri()), "{err}");
}

#[tokio::test]
async fn a_file_with_a_column_outside_the_schema_is_refused() {
    let f = fixture(None).await;
    let batch = RecordBatch::try_from_iter([(
        "surprise",
        Arc::new(StringArray::from(vec!["x"])) as Arc<dyn Array>,
    )])
    .unwrap();
    let loc = f.data.join("odd/odd.parquet");
    write_parquet(&f.stores, &loc, &batch).await;
    let err = f.catalog.register(&f.table, std::slice::from_ref(&loc)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("file {} has column 'surprise', which is not in the table schema", loc.uri())
    );
}

#[tokio::test]
async fn successive_batches_make_successive_snapshots() {
    let f = fixture(None).await;
    let a = write_rows(&f.stores, &f.data, "a", &[row("a", CELL_A, "2020-01-01T00:00:00Z")]).await;
    let b = write_rows(&f.stores, &f.data, "b", &[row("b", CELL_B, "2021-01-01T00:00:00Z")]).await;
    let (t1, s1) = f.catalog.register(&f.table, &[a]).await.unwrap();
    let (t2, s2) = f.catalog.register(&t1, &[b]).await.unwrap();
    let snaps = snapshots(&t2);
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1].parent_id, s1.snapshot_id);
    assert_eq!(Some(snaps[1].id), s2.snapshot_id);
    assert_eq!(snaps[1].summary.get("total-records").map(String::as_str), Some("2"));
    let (_, empty) = f.catalog.register(&t2, &[]).await.unwrap();
    assert_eq!(empty.snapshot_id, None);
}

#[tokio::test]
async fn a_file_without_field_ids_and_with_reordered_columns_scans_back_by_name() {
    let f = fixture(None).await;
    // As pyarrow writes by default: no PARQUET:field_id, and here grid_partition before id.
    let batch = RecordBatch::try_from_iter([
        ("grid_partition", Arc::new(StringArray::from(vec![CELL_A, CELL_A])) as Arc<dyn Array>),
        ("id", Arc::new(StringArray::from(vec!["p1", "p2"])) as Arc<dyn Array>),
    ])
    .unwrap();
    let loc = f.data.join("plain/p.parquet");
    write_parquet(&f.stores, &loc, &batch).await;
    let (table, _) = f.catalog.register(&f.table, &[loc]).await.unwrap();
    assert_eq!(ids(&table, None).await, set(&["p1", "p2"]));
    let cell_a = Reference::new("grid_partition").equal_to(Datum::string(CELL_A));
    assert_eq!(ids(&table, Some(cell_a)).await, set(&["p1", "p2"]));
}

/// The manifests a table's current snapshot lists, with the lowest and highest cell each holds.
async fn manifests_by_cell(table: &Table) -> Vec<(String, String, String)> {
    let snapshot = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(snapshot).load().await.unwrap();
    list.entries()
        .iter()
        .map(|m| {
            let cells = &m.partitions.as_ref().unwrap()[0];
            let text = |b: Option<&Vec<u8>>| String::from_utf8(b.unwrap().clone()).unwrap();
            let (low, high) = (cells.lower_bound.as_deref(), cells.upper_bound.as_deref());
            (m.manifest_path.clone(), text(low), text(high))
        })
        .collect()
}

#[tokio::test]
async fn an_append_of_many_partitions_lists_them_in_sorted_manifests_a_cell_filter_can_skip() {
    let f = fixture(None).await;
    // 300 files of one cell each, given in an order unrelated to their cells.
    let cell = |n: usize| format!("8a1fb46{:03}dffff", (n * 7919) % 1000);
    let mut files = Vec::new();
    for n in 0..300 {
        let year = 2000 + n % 20;
        let rows = [row(&format!("i{n}"), &cell(n), &format!("{year}-06-01T00:00:00Z"))];
        files.push(write_rows(&f.stores, &f.data, &format!("f{n}"), &rows).await);
    }
    let (table, summary) = f.catalog.register(&f.table, &files).await.unwrap();
    assert_eq!(summary.files, 300);

    // Several manifests, each a run of cells that no other manifest's range reaches into: a
    // query naming one cell decodes one manifest, not every entry of the commit.
    let first = manifests_by_cell(&table).await;
    assert!(first.len() >= 2, "{} manifests", first.len());
    let mut ranges: Vec<(String, String)> =
        first.iter().map(|(_, l, h)| (l.clone(), h.clone())).collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "manifest ranges overlap: {pair:?}");
    }
    let one = cell(17);
    let holding: Vec<_> = first.iter().filter(|(_, l, h)| *l <= one && one <= *h).collect();
    assert_eq!(holding.len(), 1, "{holding:?}");
    let cell_filter = Reference::new("grid_partition").equal_to(Datum::string(&one));
    assert_eq!(ids(&table, Some(cell_filter)).await, set(&["i17"]));

    // The next append keeps those manifests as they are, adds its own, and counts on.
    let extra =
        write_rows(&f.stores, &f.data, "x", &[row("x", CELL_A, "2021-01-01T00:00:00Z")]).await;
    let (table, _) = f.catalog.register(&table, &[extra]).await.unwrap();
    let second = manifests_by_cell(&table).await;
    assert_eq!(second.len(), first.len() + 1);
    assert_eq!(second[..first.len()], first[..]);
    let snaps = snapshots(&table);
    let totals = &snaps[1].summary;
    assert_eq!(totals.get("total-data-files").map(String::as_str), Some("301"));
    assert_eq!(totals.get("total-records").map(String::as_str), Some("301"));
    assert_eq!(snaps[1].operation, "append");
    assert_eq!(ids(&table, None).await.len(), 301);
}

#[tokio::test]
async fn files_of_different_layouts_described_in_turn_each_get_their_own_columns() {
    let f = fixture(None).await;
    let full =
        write_rows(&f.stores, &f.data, "full", &[row("f1", CELL_A, "2020-01-01T00:00:00Z")]).await;
    // Two columns, in another order than the table's: its column 0 is grid_partition, not id.
    let batch = RecordBatch::try_from_iter([
        ("grid_partition", Arc::new(StringArray::from(vec![CELL_B])) as Arc<dyn Array>),
        ("id", Arc::new(StringArray::from(vec!["p1"])) as Arc<dyn Array>),
    ])
    .unwrap();
    let reordered = f.data.join("plain/r.parquet");
    write_parquet(&f.stores, &reordered, &batch).await;
    // Described one after the other on one thread, as a run describes its files.
    for (file, id, cell, columns) in
        [(&full, "f1", CELL_A, 34), (&reordered, "p1", CELL_B, 2), (&full, "f1", CELL_A, 34)]
    {
        let df = f.catalog.describe_file(&f.table, file).await.unwrap();
        assert_eq!(df.lower_bounds().get(&1), Some(&Datum::string(id)), "{file}");
        assert_eq!(df.upper_bounds().get(&1), Some(&Datum::string(id)), "{file}");
        assert_eq!(df.partition().fields()[0], Some(iceberg::spec::Literal::string(cell)));
        assert_eq!(df.value_counts().len(), columns, "{file}");
    }
}
