# frozen_string_literal: true

# The embedded control plane's HTTP side, through the installed gem, after
# a known workload: 1,000 runs (900 completed, 50 failed, 50 cancelled) on
# 2 workers, one workflow named with a <script> tag and failures whose
# error text is HTML. Checked with real parts:
#
# - /metrics parsed here, every number equal to the control plane's state;
# - a real Prometheus (Debian `prometheus`) scraping it with the bearer
#   token, its query API giving the same numbers;
# - headless Chromium loading the dashboard through the /?token= bootstrap,
#   the rendered DOM's numbers read back, no injected element, and a
#   screenshot saved under target/ (BLAZEN_TEST_ARTIFACTS, else next to
#   BLAZEN_TEST_CERTS, else the temp dir);
# - the token refused on every route, the JSON API's paging and bad input,
#   and the same listing through Server#list_runs.
#
#   GEM_HOME=... ruby tests/ruby/test_http.rb

require "minitest/autorun"
require "json"
require "net/http"
require "securerandom"
require "socket"
require "tmpdir"
require "fileutils"
require "uri"
require "blazen"

CP = Blazen::ControlPlane
ENV.delete("BLAZEN_PEER_TOKEN")

# The workload, run once for every test.
module Workload
  TOKEN = SecureRandom.hex(16)
  HOSTILE = %(<script>alert("pwned")</script>)
  HOSTILE_ERROR = %(<img src=x onerror="alert(1)"> & "quotes")
  OK_RUNS = 900
  FAILED_RUNS = 50
  CANCELLED_RUNS = 50
  MAX_IN_FLIGHT = 8
  WAIT = 60

  class << self
    attr_reader :server, :client, :workers, :failed_ids, :hostile_id, :http

    def start
      @server = CP::Server.start("127.0.0.1:0", http: "127.0.0.1:0", bearer_token: TOKEN)
      @http = URI(@server.http_endpoint)
      @client = CP::Client.connect(@server.endpoint, bearer_token: TOKEN)
      caps = %w[ok boom].map { |w| { kind: "workflow:#{w}", version: 0 } } +
             [{ kind: "workflow:#{HOSTILE}", version: 0 }]
      @workers = %w[node-a node-b].map do |node|
        w = CP::Worker.new(endpoint: @server.endpoint, node_id: node, capabilities: caps,
                           admission: :fixed, admission_param: MAX_IN_FLIGHT, bearer_token: TOKEN) do |a|
          raise HOSTILE_ERROR if a[:workflow_name] == "boom"

          { "n" => a[:input] }
        end
        [w, Thread.new { w.run }]
      end
      wait_for("2 workers") { @client.list_workers.size == 2 }
      run_workload
    end

    def run_workload
      @failed_ids = []
      (OK_RUNS - 1).times { |i| @client.submit_workflow(workflow_name: "ok", input: i) }
      FAILED_RUNS.times { |i| @failed_ids << @client.submit_workflow(workflow_name: "boom", input: i)[:run_id] }
      # No worker serves "parked": queued, then cancelled.
      parked = Array.new(CANCELLED_RUNS) { |i| @client.submit_workflow(workflow_name: "parked", input: i)[:run_id] }
      parked.each { |id| @client.cancel_workflow(id) }
      # The newest run, so the dashboard's first page shows its name.
      @hostile_id = @client.submit_workflow(workflow_name: HOSTILE, input: 0)[:run_id]
      wait_for("every run to finish") do
        c = overview["by_status"]
        c["completed"] == OK_RUNS && c["failed"] == FAILED_RUNS && c["cancelled"] == CANCELLED_RUNS
      end
    end

    def overview = JSON.parse(get("/api/overview").body)

    def get(path, headers = { "Authorization" => "Bearer #{TOKEN}" })
      Net::HTTP.start(@http.host, @http.port) do |h|
        req = Net::HTTP::Get.new(path)
        headers.each { |k, v| req[k] = v }
        h.request(req)
      end
    end

    def wait_for(what, timeout = WAIT)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      until yield
        raise "timed out waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.05
      end
    end

    def stop
      @workers&.each do |w, t|
        w.shutdown
        t.join(10)
        w.close
      end
      @client&.close
      @server&.shutdown
      @server&.close
    end
  end
end

Workload.start
Minitest.after_run { Workload.stop }

# Prometheus text format, as far as these tests need: samples by name and labels.
module PromText
  LINE = /\A([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\z/

  def self.parse(text)
    samples = []
    text.each_line(chomp: true) do |line|
      next if line.empty? || line.start_with?("#")

      m = LINE.match(line) or raise "not a sample line: #{line.inspect}"
      samples << [m[1], labels(m[2] || ""), Float(m[3])]
    end
    samples
  end

  def self.labels(text)
    out = {}
    s = text.dup
    until s.empty?
      m = /\A([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/.match(s) or raise "bad labels: #{text.inspect}"
      out[m[1]] = m[2].gsub(/\\(.)/) { Regexp.last_match(1) == "n" ? "\n" : Regexp.last_match(1) }
      s = m.post_match
    end
    out
  end
end

class HttpSideTest < Minitest::Test
  W = Workload
  ROUTES = %w[/ /dashboard.js /dashboard.css /metrics /healthz /readyz /api/overview /api/workers /api/runs].freeze

  def get(path, headers = { "Authorization" => "Bearer #{W::TOKEN}" }) = W.get(path, headers)

  def artifacts_dir
    dir = ENV["BLAZEN_TEST_ARTIFACTS"] ||
          (ENV["BLAZEN_TEST_CERTS"] && File.expand_path("..", ENV["BLAZEN_TEST_CERTS"])) ||
          Dir.tmpdir
    FileUtils.mkdir_p(dir)
    dir
  end

  def free_port
    s = TCPServer.new("127.0.0.1", 0)
    s.addr[1]
  ensure
    s&.close
  end

  def sum(samples, name, **labels)
    samples.select { |n, l, _| n == name && labels.all? { |k, v| l[k.to_s] == v } }.sum { |_, _, v| v }
  end

  # ---- /metrics ---------------------------------------------------------------

  def test_metrics_match_the_control_planes_state
    r = get("/metrics")
    assert_equal "200", r.code
    assert_match %r{\Atext/plain; version=0\.0\.4}, r["content-type"]
    m = PromText.parse(r.body)
    assert_equal 1000, sum(m, "blazen_runs_submitted_total")
    assert_equal W::OK_RUNS, sum(m, "blazen_runs_completed_total")
    assert_equal W::FAILED_RUNS, sum(m, "blazen_runs_failed_total")
    assert_equal W::CANCELLED_RUNS, sum(m, "blazen_runs_cancelled_total")
    assert_equal 0, sum(m, "blazen_runs_requeued_total")
    assert_equal 0, sum(m, "blazen_runs_timed_out_total")
    assert_equal W::OK_RUNS - 1, sum(m, "blazen_runs_completed_total", workflow: "ok")
    assert_equal W::FAILED_RUNS, sum(m, "blazen_runs_failed_total", workflow: "boom")
    assert_equal W::CANCELLED_RUNS, sum(m, "blazen_runs_cancelled_total", workflow: "parked")
    # The hostile name comes back whole through the format's escaping.
    assert_equal 1, sum(m, "blazen_runs_completed_total", workflow: W::HOSTILE)
    assert_includes r.body, %(workflow="<script>alert(\\"pwned\\")</script>")
    assert_equal 0, sum(m, "blazen_runs_pending")
    assert_equal 0, sum(m, "blazen_runs_running")
    assert_equal 2, sum(m, "blazen_workers_connected")
    %w[node-a node-b].each do |n|
      assert_equal 0, sum(m, "blazen_worker_in_flight", node_id: n)
      assert_equal W::MAX_IN_FLIGHT, sum(m, "blazen_worker_max_in_flight", node_id: n)
    end
    assigned = W::OK_RUNS + W::FAILED_RUNS # the cancelled runs never reached a worker
    assert_equal assigned, sum(m, "blazen_run_queue_seconds_count")
    assert_equal assigned, sum(m, "blazen_run_duration_seconds_count")
    assert_equal assigned, sum(m, "blazen_run_duration_seconds_bucket", le: "+Inf")
    # 950 running + 1,000 terminal events at least; none dropped.
    assert_operator sum(m, "blazen_events_published_total"), :>=, assigned + 1000
    assert_equal 0, sum(m, "blazen_events_dropped_total")
    assert_equal 0, sum(m, "blazen_store_configured")
    assert_operator sum(m, "process_resident_memory_bytes"), :>, 1_000_000
    assert_operator sum(m, "process_open_fds"), :>, 2
    assert_operator sum(m, "process_cpu_seconds_total"), :>, 0
    # The same state through the other doors.
    o = W.overview
    assert_equal({ "pending" => 0, "running" => 0, "completed" => 900, "failed" => 50, "cancelled" => 50 },
                 o["by_status"])
    assert_equal 2, W.client.list_workers.size
  end

  def test_real_prometheus_scrapes_with_the_token_and_its_query_api_agrees
    skip "prometheus is not installed" if ENV["CI"].nil? && !system("command -v prometheus >/dev/null")
    Dir.mktmpdir("blazen-prom") do |dir|
      port = free_port
      File.write(File.join(dir, "prometheus.yml"), <<~YAML)
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          - job_name: blazen
            authorization:
              type: Bearer
              credentials: #{W::TOKEN}
            static_configs:
              - targets: ["#{W.http.host}:#{W.http.port}"]
          - job_name: blazen_no_token
            static_configs:
              - targets: ["#{W.http.host}:#{W.http.port}"]
      YAML
      log = File.join(dir, "prometheus.log")
      pid = Process.spawn("prometheus", "--config.file=#{dir}/prometheus.yml", "--storage.tsdb.path=#{dir}/data",
                          "--web.listen-address=127.0.0.1:#{port}", "--log.level=warn",
                          out: log, err: log, pgroup: true)
      begin
        query = lambda do |q|
          res = Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/api/v1/query?query=#{URI.encode_www_form_component(q)}"))
          res.code == "200" ? JSON.parse(res.body)["data"]["result"] : nil
        rescue SystemCallError, EOFError
          nil
        end
        value = ->(q) { (r = query.call(q)) && r.size == 1 ? Float(r[0]["value"][1]) : nil }
        W.wait_for("Prometheus's first scrapes", 60) do
          value.call('up{job="blazen"}') == 1 && !value.call('up{job="blazen_no_token"}').nil?
        end
        expected = {
          "sum(blazen_runs_submitted_total)" => 1000,
          "sum(blazen_runs_completed_total)" => 900,
          "sum(blazen_runs_failed_total)" => 50,
          "sum(blazen_runs_cancelled_total)" => 50,
          'blazen_runs_failed_total{workflow="boom"}' => 50,
          "blazen_workers_connected" => 2,
          "sum(blazen_worker_max_in_flight)" => 16,
          "sum(blazen_runs_pending) + sum(blazen_runs_running)" => 0,
          "blazen_run_duration_seconds_count" => 950,
          "blazen_events_dropped_total" => 0,
          'up{job="blazen_no_token"}' => 0 # refused: 401
        }
        expected.each { |q, v| assert_equal v, value.call(q), "Prometheus query #{q}" }
        hostile = query.call(%(blazen_runs_completed_total{workflow=#{W::HOSTILE.to_json}}))
        assert_equal 1, hostile.size
        assert_equal W::HOSTILE, hostile[0]["metric"]["workflow"]
        targets = JSON.parse(Net::HTTP.get(URI("http://127.0.0.1:#{port}/api/v1/targets")))["data"]["activeTargets"]
        refused = targets.find { |t| t["labels"]["job"] == "blazen_no_token" }
        assert_match(/401/, refused["lastError"])
      ensure
        Process.kill("TERM", -pid)
        Process.wait(pid)
      end
    end
  end

  # ---- the dashboard ------------------------------------------------------------

  def chromium(*args, url)
    Dir.mktmpdir("blazen-chromium") do |profile|
      cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             "--user-data-dir=#{profile}", "--virtual-time-budget=10000", *args, url]
      out = IO.popen(cmd, err: File::NULL, &:read)
      assert $?.success?, "chromium #{args.join(' ')} failed"
      out
    end
  end

  def test_dashboard_renders_the_workload_in_headless_chromium
    skip "chromium is not installed" if ENV["CI"].nil? && !system("command -v chromium >/dev/null")
    failed = W.failed_ids.last
    url = "#{W.http}/?token=#{W::TOKEN}#run=#{failed}"
    dom = chromium("--dump-dom", url)
    assert_includes dom, %(data-loaded="1"), "the page loaded its data (DOM: #{dom[0, 400]})"
    number = ->(id) { dom[%r{id="#{id}">([^<]*)<}, 1] }
    assert_equal "2", number.call("n-workers")
    assert_equal "900", number.call("n-completed")
    assert_equal "50", number.call("n-failed")
    assert_equal "50", number.call("n-cancelled")
    assert_equal "0", number.call("n-pending")
    assert_equal "0", number.call("n-running")
    assert_equal "1000", number.call("n-submitted")
    assert_equal 2, dom.scan(/<tr data-node="node-[ab]">/).size
    assert_equal 2, dom.scan(%r{<td class="inflight">0 / 8</td>}).size
    # The failed run's timeline is open (from #run=), its error shown as text.
    assert_includes dom, %(<strong>status.failed</strong>)
    assert_includes dom, "&lt;img src=x onerror=\"alert(1)\"&gt; &amp; \"quotes\""
    # Hostile strings are text, never elements: the only <script> is the page's own.
    assert_equal [%(<script src="/dashboard.js" defer=""></script>)], dom.scan(%r{<script[^>]*>.*?</script>}m)
    refute_match(/<img /, dom)
    assert_includes dom, "&lt;script&gt;alert(\"pwned\")&lt;/script&gt;"

    path = File.join(artifacts_dir, "http-dashboard.png")
    FileUtils.rm_f(path)
    chromium("--screenshot=#{path}", "--window-size=1440,1200", "--hide-scrollbars", url)
    assert File.size?(path), "screenshot written to #{path}"
    puts "dashboard screenshot: #{path}"
  end

  def test_the_page_without_a_token_says_how_to_sign_in
    skip "chromium is not installed" if ENV["CI"].nil? && !system("command -v chromium >/dev/null")
    dom = chromium("--dump-dom", "#{W.http}/")
    assert_includes dom, "401"
    refute_includes dom, "n-completed"
    assert_includes get("/?token=wrong", {}).body, "/?token=TOKEN"
  end

  # ---- the token, headers ---------------------------------------------------------

  def test_every_route_needs_the_token
    (ROUTES + ["/api/runs/#{W.hostile_id}", "/nowhere"]).each do |route|
      [{}, { "Authorization" => "Bearer wrong" }, { "Authorization" => W::TOKEN },
       { "Cookie" => "blazen_token=wrong" }].each do |headers|
        r = get(route, headers)
        assert_equal "401", r.code, "#{route} with #{headers}"
        assert_match(/Bearer/, r["www-authenticate"])
        refute_includes r.body, W::TOKEN
      end
      r = get(route)
      assert_includes %w[200 404], r.code, route
      assert_includes r["content-security-policy"], "script-src 'self'"
      assert_equal "nosniff", r["x-content-type-options"]
    end
    assert_equal "200", get("/metrics", { "Cookie" => "x=1; blazen_token=#{W::TOKEN}" }).code
    assert_equal "401", get("/?token=wrong", {}).code
    boot = get("/?token=#{W::TOKEN}", {})
    assert_equal "303", boot.code
    assert_equal "/", boot["location"]
    assert_match(/\Ablazen_token=#{W::TOKEN}; Path=\/; HttpOnly; SameSite=Strict\z/, boot["set-cookie"])
    assert_equal "ok\n", get("/healthz").body
    assert_equal "ready\n", get("/readyz").body
  end

  # ---- the JSON API and the listing ---------------------------------------------

  def test_api_pages_runs_newest_first_and_refuses_bad_input
    seen = []
    before = nil
    loop do
      q = "/api/runs?status=failed&limit=20#{before ? "&before=#{before}" : ''}"
      page = JSON.parse(get(q).body)
      assert_operator page["runs"].size, :<=, 20
      seen.concat(page["runs"])
      before = page["next_cursor"]
      break if before.nil?
    end
    assert_equal W::FAILED_RUNS, seen.size
    assert_equal W.failed_ids.reverse, seen.map { |r| r["run_id"] }, "newest first"
    assert(seen.all? { |r| r["status"] == "failed" && r["workflow"] == "boom" && r["error"].include?(W::HOSTILE_ERROR) })
    hostile = JSON.parse(get("/api/runs?workflow=#{URI.encode_www_form_component(W::HOSTILE)}").body)["runs"]
    assert_equal [W.hostile_id], hostile.map { |r| r["run_id"] }
    all = JSON.parse(get("/api/runs?limit=1000").body)
    assert_equal 1000, all["runs"].size
    assert_nil all["next_cursor"]
    assert_equal all["runs"].map { |r| r["seq"] }.sort.reverse, all["runs"].map { |r| r["seq"] }

    one = JSON.parse(get("/api/runs/#{W.failed_ids.first}").body)
    assert_equal %w[status.running status.failed], one["events"].map { |e| e["event_type"] }
    assert_equal "failed", one["status"]
    assert_equal "failed", one["snapshot"]["status"], "the control plane's own snapshot"
    assert_includes one["snapshot"]["error"], W::HOSTILE_ERROR
    assert_includes one["events"].last["data"]["error"], W::HOSTILE_ERROR
    assert_operator one["duration_ms"], :>=, 0
    %w[node-a node-b].include?(one["node_id"]) or flunk "node_id #{one['node_id']}"

    {
      "/api/runs?status=done" => "`status` must be",
      "/api/runs?limit=0" => "`limit` must be",
      "/api/runs?limit=1001" => "`limit` must be",
      "/api/runs?before=-4" => "`before` must be",
      "/api/runs?page=2" => "unknown parameter `page`",
      "/api/runs/not-a-uuid" => "`run_id` must be a UUID"
    }.each do |path, why|
      r = get(path)
      assert_equal "400", r.code, path
      assert_includes JSON.parse(r.body)["error"], why, path
    end
    assert_equal "404", get("/api/runs/#{SecureRandom.uuid}").code
    workers = JSON.parse(get("/api/workers").body)
    assert_equal %w[node-a node-b], workers.map { |w| w["node_id"] }
    assert(workers.all? { |w| w["max_in_flight"] == 8 && w["admission"] == "Fixed" })
  end

  def test_server_list_runs_from_ruby
    s = W.server
    assert_equal 50, s.list_runs(status: :cancelled, limit: 1000)[:runs].size
    assert_equal 900, s.each_run(status: :completed).count
    assert_equal 1000, s.each_run(page_size: 7).count
    page = s.list_runs(status: "FAILED", limit: 3)
    assert_equal 3, page[:runs].size
    assert_equal %i[failed], page[:runs].map { |r| r[:status] }.uniq
    refute_nil page[:next_cursor]
    older = s.list_runs(status: :failed, limit: 3, before: page[:next_cursor])
    assert_operator older[:runs].first[:seq], :<, page[:runs].last[:seq]
    assert_equal [W.hostile_id], s.list_runs(workflow: W::HOSTILE)[:runs].map { |r| r[:run_id] }
    [{ status: :done }, { limit: 0 }, { limit: 5000 }, { before: -1 }].each do |bad|
      e = assert_raises(Blazen::ValidationError, bad.inspect) { s.list_runs(**bad) }
      assert_includes e.message, "filter_json"
    end
  end

  def test_http_side_is_off_by_default_and_a_bad_address_is_refused
    CP::Server.start do |plain|
      assert_nil plain.http_endpoint
      assert_equal [], plain.list_runs[:runs]
    end
    e = assert_raises(Blazen::ValidationError) { CP::Server.start(http: "nope") }
    assert_includes e.message, "http_addr"
    CP::Server.start(http_addr: "127.0.0.1:0") do |other|
      assert_match(%r{\Ahttp://127\.0\.0\.1:\d+\z}, other.http_endpoint)
      # No token on this one: open.
      r = Net::HTTP.get_response(URI("#{other.http_endpoint}/healthz"))
      assert_equal "200", r.code
    end
  end
end
