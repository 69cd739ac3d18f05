# frozen_string_literal: true

module Blazen
  module ControlPlane
    # Turns library records into the plain Hashes with Symbol keys that
    # Blazen Ruby code uses. Not public API.
    module Records
      module_function

      # An optional u64 accessor of the `(out_ms, has_value)` shape.
      def optional_ms(fn, ptr)
        value = FFI::MemoryPointer.new(:uint64)
        has = FFI::MemoryPointer.new(:int32)
        Native.public_send(fn, ptr, value, has)
        has.read_int32 == 1 ? value.read_uint64 : nil
      end

      # A run snapshot Hash from a `BlazenRunStateSnapshot *`, which it frees.
      def snapshot(ptr)
        s = FFISupport
        {
          run_id: s.take_string(Native.blazen_run_state_snapshot_run_id(ptr)),
          status: STATUS_NAMES.fetch(Native.blazen_run_state_snapshot_status(ptr), :unknown),
          started_at_ms: Native.blazen_run_state_snapshot_started_at_ms(ptr),
          completed_at_ms: optional_ms(:blazen_run_state_snapshot_completed_at_ms, ptr),
          assigned_to: s.take_string(Native.blazen_run_state_snapshot_assigned_to(ptr)),
          last_event_at_ms: optional_ms(:blazen_run_state_snapshot_last_event_at_ms, ptr),
          output: s.parse(s.take_string(Native.blazen_run_state_snapshot_output_json(ptr))),
          error: s.take_string(Native.blazen_run_state_snapshot_error(ptr))
        }
      ensure
        Native.blazen_run_state_snapshot_free(ptr)
      end

      # Worker-info Hashes from a `BlazenWorkerInfoList *`, which it frees.
      def worker_list(list)
        Array.new(Native.blazen_worker_info_list_count(list)) do |i|
          worker_info(Native.blazen_worker_info_list_get(list, i))
        end
      ensure
        Native.blazen_worker_info_list_free(list)
      end

      def worker_info(ptr)
        s = FFISupport
        {
          node_id: s.take_string(Native.blazen_worker_info_node_id(ptr)),
          capabilities: s.parse(s.take_string(Native.blazen_worker_info_capabilities_json(ptr))),
          tags: s.parse(s.take_string(Native.blazen_worker_info_tags_json(ptr))) || {},
          admission: s.parse(s.take_string(Native.blazen_worker_info_admission_json(ptr))),
          in_flight: Native.blazen_worker_info_in_flight(ptr),
          connected_at_ms: Native.blazen_worker_info_connected_at_ms(ptr)
        }
      ensure
        Native.blazen_worker_info_free(ptr)
      end

      # An event Hash from the borrowed strings of an `on_event` call.
      def event(run_id, event_type, data_json, timestamp_ms)
        { run_id: run_id.dup.force_encoding(Encoding::UTF_8), event_type: event_type.dup,
          data: JSON.parse(data_json), timestamp_ms: timestamp_ms }
      end
    end
  end
end
