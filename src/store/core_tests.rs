//! The library's Redis-free decisions (`scripts/core.lua`) run in a plain Lua 5.1, the
//! language Redis embeds, without Redis: a routing rule or a strategy's arithmetic is tested
//! in milliseconds. The same file is what the library loads.

use mlua::{FromLuaMulti, Lua};

/// A Lua with `Core` loaded as a global, as the library has it.
fn lua() -> Lua {
    let lua = Lua::new();
    let chunk = format!(
        "local Core = {{}}\n{}\n_G.Core = Core",
        include_str!("scripts/core.lua")
    );
    lua.load(chunk).exec().expect("core.lua loads on its own");
    lua
}

/// The value of a Lua expression, with `Core` in scope.
fn eval<T: FromLuaMulti>(lua: &Lua, expression: &str) -> T {
    lua.load(format!("return {expression}"))
        .eval()
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// Asserts that the Lua `expression` is true, naming it when it is not.
fn holds(lua: &Lua, expression: &str) {
    assert!(eval::<bool>(lua, expression), "does not hold: {expression}");
}

/// Asserts that the Lua `expression` is false, naming it when it is not.
fn holds_not(lua: &Lua, expression: &str) {
    assert!(!eval::<bool>(lua, expression), "holds: {expression}");
}

#[test]
fn core_calls_no_redis_and_needs_nothing_else() {
    let source = include_str!("scripts/core.lua");
    for foreign in ["redis.", "cjson.", "K.", "Call.", "Pools.", "Agents."] {
        assert!(!source.contains(foreign), "core.lua uses {foreign}");
    }
    // It loads in a Lua that has nothing but the standard library.
    let lua = lua();
    assert_eq!(eval::<i64>(&lua, "Core.OUTSIDE"), 1001);
}

#[test]
fn an_event_older_than_a_things_version_is_stale_and_the_same_one_a_duplicate() {
    let lua = lua();
    let judge = |args: &str| eval::<String>(&lua, &format!("Core.judge({args})"));
    assert_eq!(judge("nil, nil, 5, 'e1'"), "apply"); // nothing applied yet
    assert_eq!(judge("10, 'e1', 5, 'e2'"), "stale");
    assert_eq!(judge("10, 'e1', 10, 'e2'"), "apply"); // same time: in the order applied
    assert_eq!(judge("10, 'e1', 11, 'e2'"), "apply");
    assert_eq!(judge("10, 'e1', 10, 'e1'"), "duplicate");
    assert_eq!(judge("10, 'e1', nil, 'e2'"), "apply"); // without time: never stale
    assert_eq!(judge("10, 'e1', nil, 'e1'"), "duplicate");
    assert_eq!(judge("nil, 'e1', 3, 'e2'"), "apply"); // the version came without time
}

#[test]
fn a_version_keeps_the_latest_time_and_the_last_digest() {
    let lua = lua();
    let advanced = |args: &str| eval::<String>(&lua, &format!("Core.advanced_version({args})"));
    assert_eq!(advanced("nil, 5, '5', 'e1'"), "5:e1");
    assert_eq!(advanced("10, 5, '5', 'e2'"), "10:e2");
    assert_eq!(advanced("10, 12, '12', 'e3'"), "12:e3");
    assert_eq!(advanced("10, nil, nil, 'e4'"), "10:e4");
    assert_eq!(advanced("nil, nil, nil, 'e5'"), ":e5");
    // Microseconds since the epoch stay exact (below 2^53).
    assert_eq!(
        advanced("nil, 1795341600000001, '1795341600000001', 'e6'"),
        "1795341600000001:e6"
    );
    let (time, digest): (Option<i64>, String) =
        eval(&lua, "Core.parse_version('1795341600000001:e6')");
    assert_eq!((time, digest.as_str()), (Some(1_795_341_600_000_001), "e6"));
    let (time, digest): (Option<i64>, String) = eval(&lua, "Core.parse_version(':e5')");
    assert_eq!((time, digest.as_str()), (None, "e5"));
    // A patch is applied if any part of it is; else stale; else a duplicate.
    let combined =
        |set: &str| eval::<Option<String>>(&lua, &format!("Core.combined_outcome({set})"));
    assert_eq!(combined("{stale = true, apply = true}"), None);
    assert_eq!(
        combined("{stale = true, duplicate = true}").as_deref(),
        Some("stale")
    );
    assert_eq!(combined("{duplicate = true}").as_deref(), Some("duplicate"));
}

#[test]
fn the_first_rule_that_matches_routes_the_conversation() {
    let lua = lua();
    lua.load(
        r#"
        rules = {
          { when = { language = { 'es', 'pt' }, vip = true }, route_to = { { skills = { 'es' } } } },
          { when = { channel = 'whatsapp' }, route_to = { { skills = { 'wa' }, wait_seconds = 30 }, {} } },
          { when = { ['attributes.plan'] = 'gold' }, route_to = { { skills = { 'gold' } } } },
          { route_to = { { skills = { 'any' } } } },
        }
        "#,
    )
    .exec()
    .unwrap();
    let rule = |record: &str| eval::<i64>(&lua, &format!("Core.matching_rule({record}, rules)"));
    assert_eq!(rule("{ lang = 'pt', attrs = { vip = true } }"), 1);
    // A condition on a field the conversation lacks does not hold.
    assert_eq!(rule("{ lang = 'pt' }"), 4);
    assert_eq!(rule("{ lang = 'pt', ch = 'whatsapp' }"), 2);
    assert_eq!(rule("{ attrs = { plan = 'gold' } }"), 3);
    assert_eq!(rule("{}"), 4);
    assert!(eval::<Option<i64>>(&lua, "Core.matching_rule({}, {})").is_none());
    assert!(eval::<Option<i64>>(&lua, "Core.matching_rule({}, nil)").is_none());
    // The step a conversation is at, and whether a wider one follows.
    holds(
        &lua,
        "(function() local r = { ri = 2, si = 1 } local step, rule = Core.current_step(r, rules) \
         return step.wait_seconds == 30 and Core.has_next_step(r, rule) end)()",
    );
    holds_not(
        &lua,
        "(function() local r = { ri = 2, si = 2 } local _, rule = Core.current_step(r, rules) \
         return Core.has_next_step(r, rule) end)()",
    );
}

#[test]
fn a_requirement_names_one_pool_however_it_is_written() {
    let lua = lua();
    let text = |req: &str| eval::<Option<String>>(&lua, &format!("Core.requirement_text({req})"));
    assert_eq!(
        text("{ s = { 'fr', 'billing' }, sc = { 'web' } }"),
        text("{ s = { 'billing', 'fr' }, sc = { 'web' } }")
    );
    assert_ne!(text("{ s = { 'fr' } }"), text("{ sc = { 'fr' } }"));
    // No requirement: the base pool.
    assert_eq!(text("{ s = {}, sc = {} }"), None);
    // No rule step and no channel rights in the project: the base pool.
    holds(&lua, "Core.requirement(nil, { ch = 'web' }, false) == nil");
    assert_eq!(
        eval::<Option<String>>(
            &lua,
            "Core.requirement_text(Core.requirement(nil, { ch = 'web', ca = 'acct' }, true))"
        )
        .as_deref(),
        Some("//web/acct")
    );
}

#[test]
fn an_agent_qualifies_with_every_skill_and_the_channel() {
    let lua = lua();
    let qualifies =
        |cfg: &str, req: &str| eval::<bool>(&lua, &format!("Core.qualifies({cfg}, {req})"));
    let bilingual = "{ skills = { 'fr', 'es', 'billing' } }";
    assert!(qualifies(bilingual, "{ s = { 'es', 'billing' } }"));
    assert!(!qualifies(bilingual, "{ s = { 'es', 'legal' } }"));
    // Channel rights: an agent without `channels` receives from every channel.
    assert!(qualifies(bilingual, "{ ch = 'whatsapp' }"));
    let web_only = "{ channels = { 'web', 'acct-7' } }";
    assert!(qualifies(web_only, "{ ch = 'web' }"));
    assert!(!qualifies(web_only, "{ ch = 'whatsapp' }"));
    // The channel account may grant it where the channel does not.
    assert!(qualifies(web_only, "{ ch = 'whatsapp', ca = 'acct-7' }"));
    assert!(!qualifies(web_only, "{ sc = { 'web', 'email' } }"));
}

#[test]
fn eligibility_follows_status_limits_and_the_switches() {
    let lua = lua();
    let receives = |status: &str, busy: bool, offline: bool| {
        eval::<bool>(
            &lua,
            &format!("Core.status_receives('{status}', {busy}, {offline}) == true"),
        )
    };
    assert!(receives("online", false, false));
    assert!(!receives("busy", false, false));
    assert!(receives("busy", true, false));
    assert!(!receives("offline", true, false));
    assert!(receives("offline", false, true));
    holds(&lua, "Core.receives({ max_concurrent = 2 }, true)");
    holds_not(&lua, "Core.receives({ max_concurrent = 0 }, true)");
    holds_not(
        &lua,
        "Core.receives({ max_concurrent = 2, auto_assign = false }, true)",
    );
    holds_not(&lua, "Core.receives({ max_concurrent = 2 }, false)");
    holds(&lua, "Core.has_room({ max_concurrent = 2 }, 1)");
    holds_not(&lua, "Core.has_room({ max_concurrent = 2 }, 2)");
    holds(&lua, "Core.daily_limit_reached({ daily_limit = 3 }, '3')");
    holds_not(&lua, "Core.daily_limit_reached({ daily_limit = 3 }, false)");
    holds_not(&lua, "Core.daily_limit_reached({}, '99')");
}

#[test]
fn scores_put_each_precedence_level_in_its_own_range() {
    let lua = lua();
    // least_loaded: a level's agents sort by load, whatever their tie-breaking fraction, and
    // every agent of level 1 comes before any of level 2.
    let score = |cfg: &str, load: u64, tie: &str| {
        format!("tonumber(Core.load_score(Core.load_whole({cfg}, {load}), {tie}))")
    };
    let top = "Core.LOAD_FRACTION_TIES - 1";
    let level = |n: u32| format!("{{ priority = {n} }}");
    holds(
        &lua,
        &format!(
            "{} < {}",
            score(&level(1), 5, top),
            score(&level(1), 6, "0")
        ),
    );
    holds(
        &lua,
        &format!(
            "{} < {}",
            score(&level(1), 99999, top),
            score(&level(2), 0, "0")
        ),
    );
    holds(
        &lua,
        &format!(
            "Core.in_level({0}, 3) and not Core.in_level({0}, 2)",
            score(&level(3), 7, "31")
        ),
    );
    holds(
        &lua,
        &format!("Core.in_level({}, Core.OUTSIDE)", score("{}", 0, "0")),
    );
    // The largest fraction, parsed as Redis parses it, stays below the next load even in the
    // largest bucket, where a double keeps only sixty-fourths.
    holds(
        &lua,
        &format!(
            "{} < {} and Core.load_score('100100000000012', 42) == '100100000000012.656250'",
            score("{}", 12, top),
            score("{}", 13, "0")
        ),
    );
    // round_robin: `order` first, insertion order for equal orders and as the default.
    holds(
        &lua,
        "Core.order_score({ order = 1, seq = 9 }) < Core.order_score({ order = 2, seq = 1 })",
    );
    holds(
        &lua,
        "Core.order_score({ order = 1, seq = 1 }) < Core.order_score({ order = 1, seq = 2 })",
    );
    holds(
        &lua,
        "Core.order_score({ seq = 3 }) < Core.order_score({ seq = 4 })",
    );
}

#[test]
fn whole_load_scores_order_as_fractional_ones_and_stay_exact_integers() {
    let lua = lua();
    let whole = |cfg: &str, load: &str, tie: &str| {
        eval::<String>(
            &lua,
            &format!("Core.whole_load_score({cfg}, {load}, {tie})"),
        )
    };
    // Redis keeps a score as an integer only when its text is one: no point, no exponent.
    for text in [
        whole("{}", "0", "0"),
        whole("{ priority = 1000 }", "100000", "1023"),
        whole("{}", "Core.WHOLE_LOAD_CAP", "Core.LOAD_TIES - 1"),
    ] {
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text}");
    }
    assert_eq!(whole("{}", "0", "0"), "100100000000000");
    assert_eq!(whole("{ priority = 2 }", "3", "7"), "200000003079");
    // Load first, whatever the tie; a level's every agent before the next level's.
    holds(
        &lua,
        "tonumber(Core.whole_load_score({ priority = 1 }, 5, Core.LOAD_TIES - 1)) \
         < tonumber(Core.whole_load_score({ priority = 1 }, 6, 0))",
    );
    holds(
        &lua,
        "tonumber(Core.whole_load_score({ priority = 1 }, 1e12, Core.LOAD_TIES - 1)) \
         < tonumber(Core.whole_load_score({ priority = 2 }, 0, 0))",
    );
    holds(
        &lua,
        "Core.in_level(tonumber(Core.whole_load_score({ priority = 3 }, 7, 5)), 3) \
         and Core.in_level(tonumber(Core.whole_load_score({}, 1e12, 1023)), Core.OUTSIDE)",
    );
    // Beyond the cap, loads no longer order (no agent holds 90 million conversations).
    assert_eq!(
        whole("{}", "1e12", "0"),
        whole("{}", "Core.WHOLE_LOAD_CAP", "0")
    );
}

#[test]
fn weighted_shares_follow_the_weights() {
    // Stride scheduling as the library does it: the agent with the lowest pass is served and
    // its pass moves by 1/weight. Weights 100 and 200 (the second by its daily limit) give a
    // third and two thirds, exactly, over every 300.
    let lua = lua();
    let shares: Vec<i64> = eval(
        &lua,
        "(function()
           local agents = { { cfg = { weight = 100 }, pass = 0, served = 0 },
                            { cfg = { daily_limit = 200 }, pass = 0, served = 0 } }
           for _ = 1, 300 do
             local best = agents[1].pass <= agents[2].pass and agents[1] or agents[2]
             best.served = best.served + 1
             best.pass = Core.pass_after_assignment(best.pass, best.cfg)
           end
           return { agents[1].served, agents[2].served }
         end)()",
    );
    assert_eq!(shares, [100, 200]);
    // An agent rejoining starts at the current virtual time: time away is not paid back.
    let (pass, rejoined): (f64, bool) = eval(&lua, "Core.joining_pass(2, 7.5)");
    assert_eq!((pass, rejoined), (7.5, true));
    let (pass, rejoined): (f64, bool) = eval(&lua, "Core.joining_pass('9', 7.5)");
    assert_eq!((pass, rejoined), (9.0, false));
}

#[test]
fn waiting_conversations_are_served_by_priority_then_arrival() {
    let lua = lua();
    let member =
        |n: i64, id: &str| eval::<String>(&lua, &format!("Core.waiting_member({n}, '{id}')"));
    assert_eq!(member(42, "c1"), "0000000000000042|c1");
    assert!(member(9, "z") < member(10, "a"), "members order by arrival");
    assert_eq!(eval::<String>(&lua, "tostring(Core.waiting_score(0))"), "0");
    assert_eq!(eval::<f64>(&lua, "Core.waiting_score(5)"), -5.0);
    // A higher priority first, then the earlier arrival; anything beats no head at all.
    holds(&lua, "Core.served_before('0002|b', -5, '0001|a', 0)");
    holds(&lua, "Core.served_before('0001|a', 0, '0002|b', 0)");
    holds_not(&lua, "Core.served_before('0002|b', 0, '0001|a', 0)");
    holds(&lua, "Core.served_before('0002|b', 0, nil, nil)");
    // The members pairing an agent with a conversation, and one agent's range of them.
    assert_eq!(eval::<String>(&lua, "Core.pair('a1', 'c1')"), "a1|c1");
    assert_eq!(eval::<String>(&lua, "Core.after_bar('a1|c1')"), "c1");
    assert_eq!(
        eval::<(String, String)>(&lua, "Core.split_pair('a.1@x|c|1')"),
        ("a.1@x".to_string(), "c|1".to_string())
    );
    let (min, max): (String, mlua::LuaString) = eval(&lua, "Core.agent_range('a1')");
    assert_eq!(min, "[a1|");
    assert_eq!(max.as_bytes().as_ref(), b"[a1|\xff");
}

#[test]
fn skill_levels_are_minimums_and_a_list_is_level_one() {
    let lua = lua();
    let qualifies =
        |cfg: &str, req: &str| eval::<bool>(&lua, &format!("Core.qualifies({cfg}, {req})"));
    let expert = "{ skills = { spanish = 7, billing = 3 } }";
    let listed = "{ skills = { 'spanish', 'billing' } }";
    assert!(qualifies(expert, "{ s = { spanish = 5 } }"));
    assert!(qualifies(expert, "{ s = { spanish = 7, billing = 3 } }"));
    assert!(!qualifies(expert, "{ s = { spanish = 8 } }"));
    assert!(!qualifies(expert, "{ s = { legal = 1 } }"));
    assert!(qualifies(expert, "{ s = { 'spanish' } }")); // a list asks for level 1
    assert!(qualifies(listed, "{ s = { spanish = 1 } }"));
    assert!(!qualifies(listed, "{ s = { spanish = 2 } }"));
    // The sum of the step's levels ranks agents for `order_by: skill_level`.
    assert_eq!(
        eval::<i64>(
            &lua,
            &format!("Core.skill_sum({expert}, {{ spanish = 5, legal = 1 }})")
        ),
        7
    );
    assert_eq!(
        eval::<i64>(
            &lua,
            &format!("Core.skill_sum({listed}, {{ 'spanish', 'billing' }})")
        ),
        2
    );
    // A tier of a family wants that exact sum.
    assert!(qualifies(expert, "{ s = { spanish = 5 }, t = 7 }"));
    assert!(!qualifies(expert, "{ s = { spanish = 5 }, t = 6 }"));
    // Tiers stay sorted highest first, each sum once.
    assert_eq!(
        eval::<String>(
            &lua,
            "table.concat(Core.with_tier(Core.with_tier(Core.with_tier({}, 3), 9), 3), ',')"
        ),
        "9,3"
    );
}

#[test]
fn minimum_levels_and_skill_order_name_their_own_pools() {
    let lua = lua();
    let text = |req: &str| eval::<Option<String>>(&lua, &format!("Core.requirement_text({req})"));
    // A list and an object of level-one minimums are the same requirement (and the same pool as
    // before levels existed).
    assert_eq!(
        text("{ s = { 'es', 'billing' } }"),
        text("{ s = { es = 1, billing = 1 } }")
    );
    assert_eq!(text("{ s = { 'es' } }").as_deref(), Some("es///"));
    assert_ne!(text("{ s = { es = 5 } }"), text("{ s = { 'es' } }"));
    assert_ne!(
        text("{ s = { 'es' }, o = 'skill_level' }"),
        text("{ s = { 'es' } }")
    );
    // A capacity per channel makes the channel part of the requirement, as channel rights do.
    assert_eq!(
        eval::<Option<String>>(
            &lua,
            "Core.requirement_text(Core.requirement({ skills = { es = 5 }, order_by = 'skill_level' }, { ch = 'chat' }, true))"
        )
        .as_deref(),
        Some("es:5//chat//skill_level")
    );
}

#[test]
fn a_capacity_per_channel_bounds_that_channel_only() {
    let lua = lua();
    let cfg = "{ max_concurrent = 5, capacity = { chat = 2, email = 0 } }";
    let room = |channel: &str, load: i64| {
        eval::<bool>(
            &lua,
            &format!("Core.has_channel_room({cfg}, {channel}, {load})"),
        )
    };
    assert!(room("'chat'", 1));
    assert!(!room("'chat'", 2));
    assert!(!room("'email'", 0)); // 0: never that channel
    assert!(room("'voice'", 99)); // not listed: max_concurrent alone bounds it
    assert!(room("nil", 99));
    holds(&lua, &format!("Core.has_channel_capacity({cfg})"));
    holds_not(&lua, "Core.has_channel_capacity({ capacity = {} })");
    holds_not(&lua, "Core.has_channel_capacity(nil)");
    // Why an agent is passed over says so.
    assert_eq!(
        eval::<String>(
            &lua,
            &format!("Core.exclusion({cfg}, 'online', true, 2, nil, {{ ch = 'chat' }}, nil, 2)")
        ),
        "at_channel_capacity"
    );
}

#[test]
fn longest_idle_orders_by_load_then_by_last_assignment() {
    let lua = lua();
    let score =
        |load: i64, last: &str| eval::<f64>(&lua, &format!("Core.idle_score({load}, {last})"));
    // Equal loads: the older last assignment first; never assigned before anyone.
    assert!(score(1, "nil") < score(1, "5"));
    assert!(score(1, "5") < score(1, "6"));
    // Load still comes first, whatever the idle time.
    assert!(score(1, "999999999999") < score(2, "0"));
    // Exact at the extremes (below 2^53).
    let top = score(8999, "999999999999");
    assert_eq!(top, 8_999_999_999_999_999.0);
    assert!(top < 9_007_199_254_740_992.0);
    assert_eq!(score(100_000, "0"), score(8999, "0")); // larger loads share the cap
}

#[test]
fn a_sweep_takes_the_head_entries_older_than_the_cutoff_and_stops_at_the_first_newer() {
    let lua = lua();
    assert_eq!(
        eval::<(String, i64)>(&lua, "Core.split_stamped('v-1.x@y|28888188')"),
        ("v-1.x@y".to_string(), 28_888_188)
    );
    // An earlier release's value: the agent alone, no time.
    assert_eq!(
        eval::<(String, Option<i64>)>(&lua, "Core.split_stamped('agent-7')"),
        ("agent-7".to_string(), None)
    );
    let head = |entries: &str, cutoff: i64| {
        eval::<(Vec<String>, i64)>(
            &lua,
            &format!("(function() local ids, _, n = Core.expired_head({{{entries}}}, {cutoff}) return ids, n end)()"),
        )
    };
    assert_eq!(
        head("'a|1', 'b|5', 'a|9', 'c|3'", 9),
        (vec!["a".to_string(), "b".to_string()], 2),
        "c is older than the cutoff but waits behind a|9"
    );
    assert_eq!(head("'a|9'", 9), (vec![], 0), "at the cutoff: kept");
    assert_eq!(head("", 9), (vec![], 0));
    // An entry without a time never holds the list back.
    assert_eq!(
        head("'junk', 'a|1', 'b|20'", 9),
        (vec!["junk".to_string(), "a".to_string()], 2)
    );
}

#[test]
fn a_fields_hash_is_the_one_its_bucket_was_placed_by() {
    // Buckets already written hold their fields where these hashes put them: any other value,
    // however good a hash, would lose every visitor remembered before it.
    let lua = lua();
    for (field, hash) in [
        ("", 0_i64),
        ("v1", 35_509_962),
        ("v2", 498_800_586),
        ("v12345", 658_263_722),
        ("visitor-42@example.com", 2_122_868_605),
        ("3f2a9c1e-7d1e-4b8a-9f00-2c5d6e7f8a9b", 962_194_374),
        ("\\255\\255\\255\\255\\255", 2_502_200_511),
    ] {
        assert_eq!(
            eval::<i64>(&lua, &format!("Core.field_hash('{field}')")),
            hash,
            "{field}"
        );
    }
}

#[test]
fn one_more_bucket_moves_fields_of_one_bucket_only_and_keeps_them_even() {
    let lua = lua();
    // Where each of 4,000 hashes lies among `count` buckets.
    let place = |count: i64| -> Vec<i64> {
        eval(
            &lua,
            &format!(
                "(function() local level, placed = Core.bucket_level({count}), {{}} \
                 for h = 0, 3999 do placed[h + 1] = Core.bucket_of(h * 2654435761 % 4294967296, {count}, level) end \
                 return placed end)()"
            ),
        )
    };
    assert!(place(1).iter().all(|&b| b == 0));
    let mut before = place(1);
    for count in 1..100_i64 {
        let after = place(count + 1);
        let source: i64 = eval(&lua, &format!("Core.split_source({count})"));
        for (old, new) in before.iter().zip(&after) {
            assert!(*new < count + 1);
            // A field stays, or moves from the split bucket to the new one.
            assert!(
                old == new || (*old == source && *new == count),
                "{count}: {old} -> {new}"
            );
        }
        let moved = after.iter().filter(|&&b| b == count).count();
        let left = after.iter().filter(|&&b| b == source).count();
        assert!(
            moved > 0 && left > 0,
            "{count}: the split moved {moved} and left {left}"
        );
        before = after;
    }
    // At a power of two every bucket holds about the same share.
    let mut sizes = [0; 64];
    for b in place(64) {
        sizes[b as usize] += 1;
    }
    assert!(sizes.iter().all(|&n| (30..=100).contains(&n)), "{sizes:?}");

    // Ids as platforms send them, hashed as the library does, spread as evenly.
    for ids in [
        "'v' .. i",
        "'visitor-' .. i .. '@example.com'",
        "string.format('%08x-7d1e', i * 7919)",
    ] {
        let sizes: Vec<i64> = eval(
            &lua,
            &format!(
                "(function() local sizes = {{}} for b = 1, 64 do sizes[b] = 0 end \
                 for i = 1, 4000 do local b = Core.bucket_of(Core.field_hash({ids}), 64, 64) + 1 \
                 sizes[b] = sizes[b] + 1 end return sizes end)()"
            ),
        );
        assert!(
            sizes.iter().all(|&n| (30..=100).contains(&n)),
            "{ids}: {sizes:?}"
        );
    }
}

#[test]
fn a_sweep_round_keeps_its_pace_and_never_runs_ahead() {
    let lua = lua();
    let due = |count: i64, elapsed: i64, round: i64| -> i64 {
        eval(
            &lua,
            &format!("Core.sweep_due({count}, {elapsed}, {round})"),
        )
    };
    assert_eq!(due(10, 0, 1000), 0, "a round just begun sweeps nothing yet");
    assert_eq!(due(10, 99, 1000), 0);
    assert_eq!(due(10, 100, 1000), 1);
    assert_eq!(due(10, 550, 1000), 5);
    assert_eq!(due(10, 1000, 1000), 10);
    assert_eq!(due(10, 5000, 1000), 10, "late: every bucket, never more");
    assert_eq!(due(1, 2 * 86_400_000, 86_400_000 / 8), 1);
}

#[test]
fn what_is_made_of_a_text_is_made_once_while_the_text_is_in_use() {
    let lua = lua();
    lua.load(
        "made = 0
         kept = Core.kept_by_text(2, function(text) made = made + 1; return { text = text } end)",
    )
    .exec()
    .unwrap();
    // The same text gives the same table, made once; false is a text like any other.
    holds(
        &lua,
        "kept('a') == kept('a') and kept('a').text == 'a' and made == 1",
    );
    holds(&lua, "kept(false) == kept(false) and made == 2");
    // Two new texts later, 'a' is still kept (in the older half), and asking for it keeps it
    // among the recent ones; four new texts after that, it is forgotten and made again.
    holds(&lua, "kept('b') and kept('c') and made == 4");
    holds(&lua, "kept('a').text == 'a' and made == 4");
    holds(
        &lua,
        "kept('d') and kept('e') and kept('f') and kept('g') and made == 8",
    );
    holds(&lua, "kept('a').text == 'a' and made == 9");
}

#[test]
fn an_assignment_is_written_as_the_json_the_worker_reads() {
    let lua = lua();
    let output = |args: &str| -> serde_json::Value {
        let text: String = eval(&lua, &format!("Core.assigned_output({args})"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    assert_eq!(
        output("'c-1.a@b:c_d', 'agent-7', 'new', 'least_loaded', nil, 1"),
        serde_json::json!({
            "type": "conversation.assigned",
            "q": 1,
            "data": {
                "conversation_id": "c-1.a@b:c_d",
                "agent_id": "agent-7",
                "reason": "new",
                "strategy": "least_loaded",
            },
        })
    );
    // Without a strategy (a claim, a transfer), with the agent it was taken from; a sequence
    // past the numbers Lua would print in exponent form.
    assert_eq!(
        output("'c2', 'a2', 'transferred', nil, 'a1', 123456789012345"),
        serde_json::json!({
            "type": "conversation.assigned",
            "q": 123456789012345_u64,
            "data": {
                "conversation_id": "c2",
                "agent_id": "a2",
                "reason": "transferred",
                "previous_agent_id": "a1",
            },
        })
    );
}

#[test]
fn whole_numbers_are_written_without_a_fraction_or_an_exponent() {
    let lua = lua();
    holds(
        &lua,
        "Core.whole_text(0) == '0' and Core.whole_text(42) == '42'",
    );
    holds(&lua, "Core.whole_text(1e15) == '1000000000000000'");
    holds(&lua, "Core.whole_text(-3) == '-3'");
}
