# frozen_string_literal: true

# Ruby bindings for the Blazen C ABI (include/blazen.h), written with the
# ffi gem for the consumer test suite in this directory. The module attaches
# the C functions itself and adds a thin layer of helpers:
#
# * strings the library returns (`char *`, caller-owned) are attached as
#   `:pointer` and read with `take_string`, which frees them;
# * a `BlazenError **` out-parameter becomes a `BlazenFFI::Error` exception
#   carrying kind, subkind and message (`with_error`);
# * `Future` wraps a `BlazenFuture *` (poll, wait, fd, take_*, free);
# * `Handler`, `ContextHandler` and `EventSink` turn Ruby objects into the
#   callback tables; a `ContextHandler` block gets a `Context` wrapping the
#   run's `BlazenAssignmentContext *`.
#
# Threads: the library calls the callback tables from its own native
# threads. The functions that may wait (the `_blocking` entry points,
# `blazen_future_wait`, server shutdown) are attached with `blocking: true`
# so they release the GVL; teardown functions (`*_cancel`, `*_shutdown`,
# `*_free`) are attached without it, as the published gem attaches them:
# the library promises they never wait for a callback.

require "ffi"
require "blazen"
require "io/wait"
require "json"

module BlazenFFI
  # The gem's generated attachments (functions, constants, callback
  # tables), loaded from the gem as installed: nothing is attached here.
  extend Blazen::Native
  # The generated constants and struct classes, visible to the nested
  # helper classes' lexical lookup too.
  Blazen::Native.constants.each { |c| const_set(c, Blazen::Native.const_get(c)) }

  # Error kinds by number, from the generated ERROR_KIND_* constants.
  ERROR_KINDS = Blazen::Native.constants.grep(/\AERROR_KIND_/).to_h do |c|
    [Blazen::Native.const_get(c), c.to_s.delete_prefix("ERROR_KIND_").downcase.to_sym]
  end.freeze

  # Admission modes of blazen_controlplane_worker_new_blocking.
  ADMISSION_FIXED = 0
  ADMISSION_VRAM_BUDGET = 1
  ADMISSION_REACTIVE = 2

  # ===========================================================================
  # Helpers
  # ===========================================================================

  # A library error, raised from a `BlazenError *`.
  class Error < StandardError
    attr_reader :kind, :subkind

    def initialize(kind, message, subkind = nil)
      @kind = kind
      @subkind = subkind
      super(message)
    end

    def kind_name
      ERROR_KINDS.fetch(kind, :unknown)
    end

    # "validation (4): ..." or "peer (12)/ControlPlaneNotFound: ...".
    def describe
      "#{kind_name} (#{kind})#{subkind ? "/#{subkind}" : ''}: #{message}"
    end

    def inspect
      "#<#{self.class} #{describe}>"
    end
  end

  module_function

  # Reads a caller-owned `char *` returned by the library and frees it.
  # NULL gives nil.
  def take_string(ptr)
    return nil if ptr.nil? || ptr.null?

    ptr.read_string.force_encoding(Encoding::UTF_8)
  ensure
    blazen_string_free(ptr) unless ptr.nil? || ptr.null?
  end

  # Builds a `BlazenFFI::Error` from a caller-owned `BlazenError *` and frees
  # it. NULL gives nil.
  def take_error(err_ptr)
    return nil if err_ptr.nil? || err_ptr.null?

    Error.new(blazen_error_kind(err_ptr),
              take_string(blazen_error_message(err_ptr)).to_s,
              take_string(blazen_error_subkind(err_ptr)))
  ensure
    blazen_error_free(err_ptr) unless err_ptr.nil? || err_ptr.null?
  end

  # Yields a fresh `BlazenError **` (set to NULL); when the block returns a
  # non-zero status, raises the error stored there (freeing it). Returns the
  # block's value otherwise. An error stored despite a zero status is freed.
  def with_error
    slot = FFI::MemoryPointer.new(:pointer)
    slot.write_pointer(nil)
    rc = yield slot
    err = take_error(slot.read_pointer)
    if rc != 0
      raise err || Error.new(0, "call failed with status #{rc} and no error")
    end

    rc
  end

  # Yields a `T **` out slot and a `BlazenError **`; raises on a non-zero
  # status, else returns the pointer stored in the out slot.
  def with_out
    out = FFI::MemoryPointer.new(:pointer)
    out.write_pointer(nil)
    with_error { |err| yield out, err }
    out.read_pointer
  end

  # ---- futures -------------------------------------------------------------

  # A caller-owned `BlazenFuture *`.
  class Future
    TAKERS = {
      client: :blazen_future_take_controlplane_client,
      server: :blazen_future_take_controlplane_server,
      snapshot: :blazen_future_take_run_state_snapshot,
      worker_list: :blazen_future_take_worker_info_list
    }.freeze

    attr_reader :ptr

    def initialize(ptr)
      raise ArgumentError, "the library returned a NULL future" if ptr.nil? || ptr.null?

      @ptr = ptr
    end

    def ready?
      BlazenFFI.blazen_future_poll(@ptr) == 1
    end

    # Blocks (without the GVL) until the future has finished.
    def wait
      rc = BlazenFFI.blazen_future_wait(@ptr)
      raise Error.new(0, "blazen_future_wait returned #{rc}") unless rc.zero?

      self
    end

    # The future's completion descriptor (owned by the future).
    def fd
      BlazenFFI.blazen_future_fd(@ptr)
    end

    # Waits for the descriptor to become readable, with Ruby's IO. Returns
    # true when the future is ready, false on timeout. The IO object never
    # closes the descriptor (autoclose: false, and it is never #close'd).
    def wait_fd(timeout)
      fd = self.fd
      raise Error.new(0, "blazen_future_fd returned #{fd}") if fd.negative?

      io = IO.for_fd(fd, autoclose: false)
      !io.wait_readable(timeout).nil? && ready?
    end

    # Polls with blazen_future_poll until ready or `timeout` seconds pass.
    def wait_poll(timeout)
      BlazenFFI.wait_until(timeout) { ready? }
    end

    def cancel
      BlazenFFI.blazen_future_cancel(@ptr)
    end

    # Takes a handle-yielding result (`kind` one of TAKERS' keys); raises
    # the operation's error.
    def take(kind)
      taker = TAKERS.fetch(kind)
      BlazenFFI.with_out { |out, err| BlazenFFI.public_send(taker, @ptr, out, err) }
    end

    def take_unit
      BlazenFFI.with_error { |err| BlazenFFI.blazen_future_take_unit(@ptr, err) }
    end

    def free
      return if @ptr.nil?

      BlazenFFI.blazen_future_free(@ptr)
      @ptr = nil
    end
  end

  # ---- records -----------------------------------------------------------------

  Snapshot = Struct.new(:run_id, :status, :started_at_ms, :completed_at_ms,
                        :assigned_to, :output_json, :error, keyword_init: true)

  # Reads a caller-owned `BlazenRunStateSnapshot *` into a Snapshot and
  # frees it.
  def take_snapshot(ptr)
    return nil if ptr.nil? || ptr.null?

    value = FFI::MemoryPointer.new(:uint64)
    has = FFI::MemoryPointer.new(:int32)
    rc = blazen_run_state_snapshot_completed_at_ms(ptr, value, has)
    completed = rc.zero? && has.read_int32 == 1 ? value.read_uint64 : nil
    Snapshot.new(
      run_id: take_string(blazen_run_state_snapshot_run_id(ptr)),
      status: blazen_run_state_snapshot_status(ptr),
      started_at_ms: blazen_run_state_snapshot_started_at_ms(ptr),
      completed_at_ms: completed,
      assigned_to: take_string(blazen_run_state_snapshot_assigned_to(ptr)),
      output_json: take_string(blazen_run_state_snapshot_output_json(ptr)),
      error: take_string(blazen_run_state_snapshot_error(ptr))
    )
  ensure
    blazen_run_state_snapshot_free(ptr) unless ptr.nil? || ptr.null?
  end

  WorkerInfo = Struct.new(:node_id, :capabilities_json, :tags_json, :admission_json,
                          :in_flight, :connected_at_ms, keyword_init: true)

  # Reads a caller-owned `BlazenWorkerInfoList *` into an Array of
  # WorkerInfo and frees it (and every entry copy).
  def take_worker_list(list)
    return [] if list.nil? || list.null?

    Array.new(blazen_worker_info_list_count(list)) do |i|
      info = blazen_worker_info_list_get(list, i)
      begin
        WorkerInfo.new(
          node_id: take_string(blazen_worker_info_node_id(info)),
          capabilities_json: take_string(blazen_worker_info_capabilities_json(info)),
          tags_json: take_string(blazen_worker_info_tags_json(info)),
          admission_json: take_string(blazen_worker_info_admission_json(info)),
          in_flight: blazen_worker_info_in_flight(info),
          connected_at_ms: blazen_worker_info_connected_at_ms(info)
        )
      ensure
        blazen_worker_info_free(info)
      end
    end
  ensure
    blazen_worker_info_list_free(list) unless list.nil? || list.null?
  end

  # Calls the block every 10 ms until it returns truthy or `timeout`
  # seconds pass; returns the last value.
  def wait_until(timeout)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value
      return value if Process.clock_gettime(Process::CLOCK_MONOTONIC) >= deadline

      sleep 0.01
    end
  end

  # A finalizer proc that hands the handle at `address` to the teardown
  # function `fn` (as a garbage-collected wrapper of the published gem
  # does: with the VM lock held), then calls `after`.
  def finalizer(fn, address, after = nil)
    proc do
      public_send(fn, FFI::Pointer.new(address))
      after&.call
    end
  end

  # ---- callbacks -----------------------------------------------------------------
  #
  # `user_data` is a key of the gem's callback registry (a small integer,
  # never a Ruby object address, so a stale pointer can never reach a
  # collected object). The FFI::Function objects are module constants: they
  # live as long as the process, so the GC cannot free a function the
  # library may still call.

  REGISTRY = Blazen::ControlPlane::FFISupport

  # Exceptions raised inside callbacks (they must not unwind into C).
  CALLBACK_ERRORS = Queue.new

  def register(obj) = REGISTRY.register(obj)
  def lookup(user_data) = REGISTRY.lookup(user_data)
  def unregister(user_data) = REGISTRY.unregister(user_data)
  def registered_count = REGISTRY.registered_count

  # Runs a callback body; an exception is recorded, never propagated.
  def guard(where, fallback = nil)
    yield
  rescue Exception => e # rubocop:disable Lint/RescueException
    CALLBACK_ERRORS << "#{where}: #{e.class}: #{e.message}\n#{e.backtrace&.first(5)&.join("\n")}"
    fallback
  end

  # Raise this from a Handler block to fail the run with a given kind.
  class HandlerFailure < StandardError
    attr_reader :kind

    def initialize(kind, message)
      @kind = kind
      super(message)
    end
  end

  DROP_USER_DATA = FFI::Function.new(:void, [:pointer]) do |ud|
    guard("drop_user_data") do
      obj = unregister(ud)
      if obj.nil?
        CALLBACK_ERRORS << "drop_user_data for unknown user_data #{ud.address}"
      else
        obj.dropped!
      end
    end
  end

  HANDLE = FFI::Function.new(:int32, %i[pointer string string string pointer pointer]) do
    |ud, run_id, workflow, input, out_json, out_err|
    # Default when the guard itself fails: an INTERNAL error.
    guard("handle", 1) do
      handler = lookup(ud) or raise "handle for unknown user_data #{ud.address}"
      handler.call_handle(run_id, workflow, input, out_json, out_err)
    end
  end

  CONTEXT_HANDLE = FFI::Function.new(:int32, %i[pointer pointer string string string pointer pointer]) do
    |ud, ctx, run_id, workflow, input, out_json, out_err|
    guard("context handle", 1) do
      handler = lookup(ud) or raise "context handle for unknown user_data #{ud.address}"
      handler.call_context_handle(ctx, run_id, workflow, input, out_json, out_err)
    end
  end

  ON_CANCEL = FFI::Function.new(:void, %i[pointer string]) do |ud, run_id|
    guard("on_cancel") { lookup(ud)&.cancelled!(run_id) }
  end

  ON_DRAIN = FFI::Function.new(:void, %i[pointer bool]) do |ud, immediate|
    guard("on_drain") { lookup(ud)&.drained!(immediate) }
  end

  ON_EVENT = FFI::Function.new(:void, %i[pointer string string string uint64]) do
    |ud, run_id, type, data, ts|
    guard("on_event") { lookup(ud)&.event!(run_id, type, data, ts) }
  end

  ON_CLOSE = FFI::Function.new(:void, [:pointer]) do |ud|
    guard("on_close") { lookup(ud)&.closed! }
  end

  ON_ERROR = FFI::Function.new(:void, %i[pointer string]) do |ud, message|
    guard("on_error") { lookup(ud)&.errored!(message) }
  end

  # Counts drops and notifications in a thread-safe way.
  class CallbackTarget
    def initialize
      @lock = Mutex.new
      @counts = Hash.new(0)
      @drops = 0
    end

    def count(name)
      @lock.synchronize { @counts[name] }
    end

    # No lock here: `drop_user_data` may run inside a finalizer (a
    # collected subscription's `_free` releases its sink there), where Ruby
    # forbids Mutex#synchronize; it runs once per table.
    def dropped!
      @drops += 1
    end

    attr_reader :drops

    private

    def bump(name)
      @lock.synchronize { @counts[name] += 1 }
    end
  end

  # An assignment handler: the block gets (run_id, workflow_name,
  # input_json) and returns the output as a JSON string (nil for JSON null),
  # or raises (HandlerFailure for a chosen kind) to fail the run.
  class Handler < CallbackTarget
    attr_reader :cancelled_runs

    def initialize(&block)
      super()
      @block = block
      @cancelled_runs = Queue.new
    end

    def handled = count(:handled)
    def cancels = count(:cancels)
    def drains = count(:drains)

    # A fresh vtable for this handler, registered under a new key. The
    # library owns it (and calls drop_user_data) from the call it is passed
    # to on.
    def vtable
      vt = BlazenAssignmentHandlerVTable.new
      vt[:user_data] = BlazenFFI.register(self)
      vt[:drop_user_data] = DROP_USER_DATA
      vt[:handle] = HANDLE
      vt[:on_cancel] = ON_CANCEL
      vt[:on_drain] = ON_DRAIN
      vt
    end

    def call_handle(run_id, workflow, input, out_json, out_err)
      bump(:handled)
      begin
        output = @block.call(run_id, workflow, input)
      rescue HandlerFailure => e
        out_err.write_pointer(BlazenFFI.error_json_ptr(e.kind, e.message))
        return 1
      rescue StandardError => e
        out_err.write_pointer(BlazenFFI.error_json_ptr("Internal", "#{e.class}: #{e.message}"))
        return 1
      end
      out_json.write_pointer(output.nil? ? nil : BlazenFFI.blazen_string_alloc(output))
      0
    end

    def cancelled!(run_id)
      bump(:cancels)
      @cancelled_runs << run_id
    end

    def drained!(_immediate)
      bump(:drains)
    end
  end

  # The run a ContextHandler block is working on: wraps the borrowed
  # `BlazenAssignmentContext *`, which is only valid during the `handle`
  # call; afterwards every method raises instead of touching the pointer.
  class Context
    def initialize(ptr)
      @ptr = ptr
    end

    def run_id
      BlazenFFI.take_string(BlazenFFI.blazen_assignment_context_run_id(live))
    end

    def attempt
      BlazenFFI.blazen_assignment_context_attempt(live)
    end

    def cancelled?
      BlazenFFI.blazen_assignment_context_is_cancelled(live)
    end

    # Emits `event_type` with `data_json` on the run; raises BlazenFFI::Error.
    def emit_event(event_type, data_json)
      BlazenFFI.with_error do |err|
        BlazenFFI.blazen_assignment_context_emit_event(live, event_type, data_json, err)
      end
    end

    # Asks the orchestrator for input and waits (without the GVL) for the
    # answer, the run's cancellation or `timeout_ms` (0: no limit). Returns
    # the answer's JSON as a String, or with `raw: true` the library-owned
    # `char *` itself, which a handler may return as its output (the library
    # then takes it back). Raises BlazenFFI::Error.
    def request_input(prompt, metadata_json, timeout_ms, raw: false)
      ptr = BlazenFFI.with_out do |out, err|
        BlazenFFI.blazen_assignment_context_request_input_blocking(
          live, prompt, metadata_json, timeout_ms, out, err
        )
      end
      raw ? ptr : BlazenFFI.take_string(ptr)
    end

    def invalidate!
      @ptr = nil
    end

    private

    def live
      @ptr or raise "the assignment context is used after its handle call returned"
    end
  end

  # A handler for blazen_controlplane_worker_new_with_options_blocking: the
  # block gets (context, run_id, workflow_name, input_json) and returns the
  # output as a JSON String (copied with blazen_string_alloc), an
  # FFI::Pointer to a library-made string (handed over as is), or nil for
  # JSON null; it raises HandlerFailure, or lets a BlazenFFI::Error from the
  # context through, to fail the run with that kind and message.
  class ContextHandler < Handler
    def vtable
      vt = BlazenContextHandlerVTable.new
      vt[:user_data] = BlazenFFI.register(self)
      vt[:drop_user_data] = DROP_USER_DATA
      vt[:handle] = CONTEXT_HANDLE
      vt[:on_cancel] = ON_CANCEL
      vt[:on_drain] = ON_DRAIN
      vt
    end

    def call_context_handle(ctx_ptr, run_id, workflow, input, out_json, out_err)
      bump(:handled)
      ctx = Context.new(ctx_ptr)
      begin
        output = @block.call(ctx, run_id, workflow, input)
      rescue HandlerFailure => e
        out_err.write_pointer(BlazenFFI.error_json_ptr(e.kind, e.message))
        return 1
      rescue BlazenFFI::Error => e
        out_err.write_pointer(BlazenFFI.error_json_ptr(
          Blazen::Error.json_kind(e.kind) || "Internal", e.message, subkind: e.subkind
        ))
        return 1
      rescue StandardError => e
        out_err.write_pointer(BlazenFFI.error_json_ptr("Internal", "#{e.class}: #{e.message}"))
        return 1
      ensure
        ctx.invalidate!
      end
      out_json.write_pointer(
        case output
        when nil then nil
        when FFI::Pointer then output
        else BlazenFFI.blazen_string_alloc(output.to_s)
        end
      )
      0
    end
  end

  # An event sink: events go to `events` (a Thread::Queue) as
  # [run_id, event_type, data_json, timestamp_ms].
  class EventSink < CallbackTarget
    attr_reader :events

    def initialize
      super()
      @events = Queue.new
      @error_messages = Queue.new
    end

    def closes = count(:closes)
    def errors = count(:errors)

    def vtable
      vt = BlazenRunEventSinkVTable.new
      vt[:user_data] = BlazenFFI.register(self)
      vt[:drop_user_data] = DROP_USER_DATA
      vt[:on_event] = ON_EVENT
      vt[:on_close] = ON_CLOSE
      vt[:on_error] = ON_ERROR
      vt
    end

    def event!(run_id, type, data, timestamp_ms)
      @events << [run_id, type, data, timestamp_ms]
    end

    def closed!
      bump(:closes)
    end

    def errored!(message)
      @error_messages << message
      bump(:errors)
    end

    # Moves every queued event into `into` (an Array) and returns it.
    def drain_events(into = [])
      into << @events.pop(true) until @events.empty?
      into
    rescue ThreadError
      into
    end
  end

  # A library-made `BlazenError *` from a kind name and message (for a
  # handler's out_err; the library takes it).
  def error_json_ptr(kind, message, subkind: nil)
    fields = { "kind" => kind, "message" => message }
    fields["subkind"] = subkind if subkind
    blazen_error_from_json(JSON.generate(fields))
  end
end
