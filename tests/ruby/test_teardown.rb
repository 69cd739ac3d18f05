# frozen_string_literal: true

# Teardown as the published Blazen gem does it: `subscription_cancel`/`_free`,
# `worker_shutdown`/`_free` and the future teardown functions are attached
# without `blocking: true`, so the calling thread keeps the VM lock while
# library threads wait for it to run Ruby callbacks. None of these tests may
# hang; each teardown call's time is checked against a generous bound.
# Loaded at the end of test_blazen.rb (it reuses that file's helpers).

class BlazenTeardownTest < BlazenCabiTest
  # Only the helpers are inherited, not the tests.
  BlazenCabiTest.public_instance_methods(false).grep(/\Atest_/).each { |m| undef_method m }

  ROUNDS = 20
  BOUND = 1.0 # seconds a teardown call may take under the VM lock

  def timed(what)
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    dt = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    assert_operator dt, :<, BOUND, "#{what} took #{dt.round(3)} s under the VM lock"
  end

  # A worker whose handler emits nothing but runs long enough for the run
  # to be torn down while it is in progress, and whose subscriptions see a
  # steady stream of status events from many short runs.
  def test_subscriptions_closed_from_the_main_thread_while_events_flow
    flow = "flow-#{@suffix}"
    start_worker("flow-#{@suffix}", [flow], max_in_flight: 8) do |_, _, input|
      sleep 0.001
      input
    end
    ROUNDS.times do |round|
      sink = Lib::EventSink.new
      all = Lib::EventSink.new
      ids = Array.new(4) { submit(flow, "{\"n\":#{round}}", wait_for_worker: true).run_id }
      per_run = subscribe_run(ids.last, sink)
      every = Lib.with_out do |out, err|
        Lib.blazen_controlplane_client_subscribe_all(@client, nil, all.vtable, out, err)
      end
      6.times { submit(flow, "{}", wait_for_worker: true) }
      Lib.wait_until(2) { all.events.size >= 1 + (round % 3) }
      @subscriptions.delete(per_run)
      timed("subscription_cancel") { Lib.blazen_controlplane_subscription_cancel(every) } if round.even?
      timed("subscription_free (all runs)") { Lib.blazen_controlplane_subscription_free(every) }
      timed("subscription_free (one run)") { Lib.blazen_controlplane_subscription_free(per_run) }
      assert Lib.wait_until(TIMEOUT) { sink.drops == 1 && all.drops == 1 }, "both sinks dropped"
    end
  end

  def test_worker_freed_while_its_ruby_handler_runs
    ROUNDS.times do |round|
      wf = "busy-#{@suffix}-#{round}"
      entered = Queue.new
      handler = Lib::Handler.new do |_, _, _|
        entered << true
        50.times { sleep 0.002 } # Ruby work with the VM lock taken and given back
        "\"late\""
      end
      ptr = Lib.with_out do |out, err|
        Lib.blazen_controlplane_worker_new_blocking(
          EmbeddedServer.endpoint, "busy-#{@suffix}-#{round}", caps(wf), "{}",
          ADMISSION_FIXED, 2, handler.vtable, out, err
        )
      end
      run = Lib::Future.new(Lib.blazen_controlplane_worker_run(ptr))
      assert wait_listed("busy-#{@suffix}-#{round}")
      id = submit(wf, "{}", wait_for_worker: true).run_id
      entered.pop
      if round.odd?
        timed("worker_shutdown") { Lib.blazen_controlplane_worker_shutdown(ptr) }
      end
      timed("worker_free") { Lib.blazen_controlplane_worker_free(ptr) }
      timed("future_free") { run.free }
      assert Lib.wait_until(TIMEOUT) { handler.drops == 1 }, "handler dropped once"
      assert Lib.wait_until(TIMEOUT) { describe_run(id).status != RUN_STATUS_RUNNING },
             "the run is not left RUNNING"
      Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, id, nil, nil)
    end
  end

  # Unclosed subscriptions and unfreed futures left to the garbage collector:
  # finalizers run teardown functions with the VM lock held.
  def test_garbage_collection_of_unclosed_handles
    flow = "gc-#{@suffix}"
    start_worker("gc-#{@suffix}", [flow]) { |_, _, input| input }
    collected = Queue.new
    sinks = leave_unclosed_handles(flow, collected)
    4.times do
      GC.start(full_mark: true, immediate_sweep: true)
      sleep 0.05
    end
    finalized = []
    finalized << collected.pop until collected.empty?
    finalized.each do |i|
      assert Lib.wait_until(TIMEOUT) { sinks[i].drops == 1 }, "collected subscription #{i} dropped its sink once"
    end
    # Whatever the collector did not reach is closed now, the same way.
    sinks.each_index.reject { |i| finalized.include?(i) }.each { |i| @late_frees[i].call }
    assert Lib.wait_until(TIMEOUT) { sinks.all? { |s| s.drops == 1 } }, "every sink dropped once"
  end

  private

  # Opens subscriptions and futures whose only owners are throw-away objects
  # with finalizers; returns the sinks.
  def leave_unclosed_handles(flow, collected)
    @late_frees = {}
    Array.new(ROUNDS) do |i|
      sink = Lib::EventSink.new
      sub = Lib.with_out do |out, err|
        Lib.blazen_controlplane_client_subscribe_all(@client, nil, sink.vtable, out, err)
      end
      done = false
      free_once = lambda do
        next if done

        done = true
        Lib.blazen_controlplane_subscription_free(sub)
      end
      @late_frees[i] = free_once
      ObjectSpace.define_finalizer(Object.new, proc { free_once.call; collected << i })
      fut = Lib.blazen_controlplane_client_list_workers(@client)
      ObjectSpace.define_finalizer(Object.new, Lib.finalizer(:blazen_future_free, fut.address))
      2.times { submit(flow, "{}", wait_for_worker: true) }
      sink
    end
  end
end
