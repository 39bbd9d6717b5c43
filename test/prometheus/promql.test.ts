// The PromQL reading the prometheus tier's criteria rest on: if metricNames() missed a metric, a
// renamed one would go unnoticed; if splitThreshold() cut in the wrong place, the tier would
// evaluate something other than the rule's signal.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { grafanaExpr, metricNames, splitThreshold } from './prometheus.js';

describe('metricNames', () => {
  it('finds metrics, not labels, functions, keywords, durations or numbers', () => {
    assert.deepEqual(
      metricNames(
        'sum by (sluice_route, le) (rate(sluice_requests_total{error_code="x", sluice_route=~"a|b"}[5m])) / ' +
          'on (sluice_route) group_left max(gen_ai_server_request_duration_seconds_bucket offset 1h) > 1e-3',
      ).sort(),
      ['gen_ai_server_request_duration_seconds_bucket', 'sluice_requests_total'],
    );
    assert.deepEqual(metricNames('(max(sluice_operator_status_leader) or vector(0)) < 1'), [
      'sluice_operator_status_leader',
    ]);
    assert.deepEqual(
      metricNames(
        'max by (instance) (nodejs_eventloop_lag_p99_seconds and on (instance) group by (instance) (sluice_config_info)) > 0.1',
      ).sort(),
      ['nodejs_eventloop_lag_p99_seconds', 'sluice_config_info'],
    );
  });

  it('reads a metric inside a string-free selector only once, and none from strings', () => {
    assert.deepEqual(metricNames('count(x{a="sluice_requests_total"}) + x'), ['x']);
  });
});

describe('splitThreshold', () => {
  it('cuts the last comparison with a number, whatever the signal holds', () => {
    assert.deepEqual(splitThreshold('(a / b) > 0.05'), {
      signal: '(a / b)',
      op: '>',
      threshold: 0.05,
    });
    assert.deepEqual(splitThreshold('max(x) >= 1'), { signal: 'max(x)', op: '>=', threshold: 1 });
    assert.deepEqual(splitThreshold('(max(x) or vector(0)) < 1').signal, '(max(x) or vector(0))');
    assert.throws(() => splitThreshold('absent(x)'), /not of the form/);
  });

  it('every rule of the chart has the form', () => {
    const file = parse(
      readFileSync(new URL('../../charts/sluice/rules/sluice.rules.yaml', import.meta.url), 'utf8'),
    ) as { groups: { rules: { alert: string; expr: string }[] }[] };
    for (const r of file.groups.flatMap((g) => g.rules)) {
      assert.doesNotThrow(() => splitThreshold(r.expr), r.alert);
    }
  });
});

describe('grafanaExpr', () => {
  it("substitutes the dashboard's variables and refuses an unknown one", () => {
    assert.equal(
      grafanaExpr('rate(x{sluice_route=~"$route"}[$__rate_interval])', '1m'),
      'rate(x{sluice_route=~".*"}[1m])',
    );
    assert.throws(() => grafanaExpr('x{a="$team"}', '1m'), /unknown dashboard variable \$team/);
  });
});
