use super::*;

fn ir(yaml: &str) -> ServiceIr {
    skiff_ir::compile(&skiff_spec::parse("skiff.yaml", yaml.as_bytes()).unwrap())
}

const API: &str = "service: web\nartifact: {path: web}\nrun: {command: [web]}\nport: 8080\n\
intent: {availability: high, cost: low}\nsecrets: {DATABASE_URL: secret://web-db/url}\n\
database: {name: web-db, engine: postgres}\n";

#[test]
fn the_committed_table_parses_and_names_its_source_and_date() {
    let t = PriceTable::committed();
    assert!(t.source.contains("AWS") && t.as_of.len() == 10, "{t:?}");
    assert_eq!(t.currency, "USD");
    assert!(t.instance_hour.values().chain(t.database_hour.values()).all(|p| *p > 0.0));
}

#[test]
fn every_class_the_compiler_picks_has_a_price() {
    let t = PriceTable::committed();
    for cost in ["low", "balanced", "performance"] {
        for size in ["small", "medium", "large"] {
            let i = ir(&format!(
                "service: web\nartifact: {{path: web}}\nrun: {{command: [web]}}\nport: 80\nintent: {{cost: {cost}}}\n\
                 database: {{name: web-db, engine: postgres, size: {size}}}\n"
            ));
            assert!(t.instance_hour.contains_key(&i.capacity.instance_type), "{}", i.capacity.instance_type);
            let class = &i.database.as_ref().unwrap().instance_class;
            assert!(t.database_hour.contains_key(class), "{class}");
            assert!(estimate(&i).unpriced.is_empty());
        }
    }
}

#[test]
fn lines_sum_to_the_totals_and_say_what_drove_them() {
    let e = estimate(&ir(API));
    let sum: f64 = e.lines.iter().map(|l| l.monthly_usd).sum();
    assert!((sum - e.monthly_usd).abs() < 0.005, "{sum} vs {}", e.monthly_usd);
    assert!(e.at_max_usd > e.monthly_usd, "groups can double");
    let group = e.lines.iter().find(|l| l.resource == "instance-group/web").unwrap();
    assert_eq!(group.item, "3 × t4g.micro on-demand (up to 6)");
    assert!(group.drivers.iter().any(|d| d.starts_with("capacity.instance_type = t4g.micro (intent:")), "{group:?}");
    let db = e.lines.iter().find(|l| l.resource == "database/web-db").unwrap();
    assert!(db.item.contains("multi-AZ"), "{db:?}");
    assert!(e.free.iter().any(|id| id.starts_with("role/")), "{:?}", e.free);
    assert!(e.lines.iter().any(|l| l.resource == "data-transfer/web"));
}

#[test]
fn an_unknown_instance_type_is_named_not_guessed() {
    let e = estimate(&ir(
        "service: w\nkind: worker\nartifact: {path: w}\nrun: {command: [w]}\nresources: {instance_type: z9.huge}\n",
    ));
    assert_eq!(e.unpriced, ["instance-group/w (z9.huge)"]);
    assert_eq!(e.policy_facts().unpriced, e.unpriced);
}

#[test]
fn alternatives_turn_one_knob_and_keep_what_the_spec_pins() {
    let i = ir(API);
    let alts = alternatives(&i);
    let names: Vec<&str> = alts.iter().map(|a| a.intent.as_str()).collect();
    assert_eq!(
        names,
        [
            "intent.availability: low",
            "intent.availability: standard",
            "intent.cost: balanced",
            "intent.cost: performance"
        ]
    );
    let low = &alts[0];
    assert!(low.delta_usd < 0.0 && low.summary.starts_with("1 × t4g.micro"), "{low:?}");
    let perf = &alts[3];
    assert!(perf.delta_usd > 0.0 && perf.summary.contains("c7g.large"), "{perf:?}");
    let pinned = ir(&API.replace("port: 8080\n", "port: 8080\nresources: {instance_type: m7g.large}\n"));
    assert!(alternatives(&pinned).iter().all(|a| !a.summary.contains("c7g")), "an explicit class stays");
}
